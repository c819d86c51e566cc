"""handlers.shared"""
