"""bot.dm"""
