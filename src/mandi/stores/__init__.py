"""mandi.stores"""
