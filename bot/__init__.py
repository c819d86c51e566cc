"""Tocsin's platform, in layers; a layer imports only the layers below it (pyproject.toml's import-linter
contracts, checked in the test suite), and nothing here imports handlers/:

- ops       processes and operators' tools: the CLI, `tocsin serve`'s supervisor, the embedded Redis, the
            web listener, the worker and its sweep, /metrics scraping, backups, replay
- dm        the command channel: mentions read, replies parsed and carried out, paced admin work
- pipeline  events in: intake, the event stream, the queue, the family registry, surge bookkeeping
- mastodon  the instance: the paced client, admin actions, the outbox, the context every job gets
- core      settings, constants with their reasons, Redis scripting, privacy, templates, peers' HTTP
"""
