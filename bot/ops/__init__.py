"""Processes and the operator's tools: the CLI, `tocsin serve`'s supervisor and the embedded Redis,
the web listener, the worker and its periodic sweep, /metrics, backups, and `tocsin replay`."""
