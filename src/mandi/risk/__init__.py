"""mandi.risk"""
