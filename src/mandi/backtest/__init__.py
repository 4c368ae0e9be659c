"""mandi.backtest"""
