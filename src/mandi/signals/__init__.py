"""mandi.signals"""
