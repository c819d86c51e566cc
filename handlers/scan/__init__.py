"""handlers.scan.messages"""
