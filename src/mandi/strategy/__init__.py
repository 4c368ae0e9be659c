"""mandi.strategy"""
