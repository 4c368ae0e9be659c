"""mandi — an event-driven trading and options-analytics platform for Indian markets.

The package is split into a pure, deterministic kernel (``core``, ``model``, ``pipeline``,
``indicators``, ``options``, ...) and an I/O shell (``feeds``, ``stores``, ``bus.redis``, ``web``,
``services``, ``cli``). See ``docs/architecture.md``.
"""

__version__ = "0.1.0"
