"""bot.mastodon.client"""
