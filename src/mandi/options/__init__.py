"""Option analytics: pricing, implied volatility, Greeks and the option-chain matrix."""

from mandi.options.pricing import black76_price, bs_price

__all__ = ["black76_price", "bs_price"]
