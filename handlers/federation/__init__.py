"""handlers.federation.audit"""
