"""mandi.indicators"""
