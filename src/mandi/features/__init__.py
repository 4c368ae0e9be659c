"""mandi.features"""
