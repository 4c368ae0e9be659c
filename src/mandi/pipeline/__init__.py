"""mandi.pipeline"""
