"""bot.ops"""
