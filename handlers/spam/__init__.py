"""handlers.spam"""
