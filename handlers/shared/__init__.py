"""What families share, by name: payload parsing, admin URLs, proposal storage, advisories,
peers' NodeInfo, block tags, the peer list, CLI progress. A family imports another family only through
these (and handlers/reports/readers.py)."""
