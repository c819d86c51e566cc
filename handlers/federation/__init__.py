"""The federation audit: who still federates with a server we blocked (watched domains)."""
