"""mandi.brokers"""
