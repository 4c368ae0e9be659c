"""mandi.services"""
