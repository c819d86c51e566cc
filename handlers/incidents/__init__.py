"""handlers.incidents.store"""
