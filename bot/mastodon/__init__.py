"""The instance: the Mastodon.py client paced by the shared rate-limit budget (client, ratelimit),
what an admin action is and how it is carried out (actions), the outbox every post goes through, and the
context (settings, Redis, the link) each job receives."""
