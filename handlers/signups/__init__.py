"""handlers.signups"""
