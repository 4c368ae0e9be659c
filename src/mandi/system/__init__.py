"""The system layer of the kernel: where the trading stages are assembled.

:class:`mandi.system.kernel.TradingKernel` wires strategy → signals → risk → execution →
portfolio on one bus for ``mandi run``, the services and the backtester. It is kernel code (no
I/O); nothing below it imports it.
"""
