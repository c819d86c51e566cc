"""bot.pipeline"""
