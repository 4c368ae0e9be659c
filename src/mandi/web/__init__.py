"""mandi.web"""
