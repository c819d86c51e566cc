"""The bottom layer: settings, constants with their reasons, Redis scripting, the audit log, privacy
(what personal data is kept and how quoted text is disarmed), templates, metrics' counters, and the fetcher
that speaks to hostile peers. Imports nothing else of Tocsin."""
