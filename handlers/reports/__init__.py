"""handlers.reports.surge"""
