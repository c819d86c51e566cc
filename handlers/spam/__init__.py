"""Spam waves from young local accounts: near-duplicate posts, mass mentions, posting floods."""
