"""mandi.portfolio"""
