"""mandi.execution"""
