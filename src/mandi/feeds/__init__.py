"""mandi.feeds"""
