"""The paper broker's old address: it is kernel code now, :mod:`mandi.execution.paper` (pure
matching on the shared fill simulator). Kept so that ``mandi.brokers.paper.PaperBroker`` still
resolves; new code imports :mod:`mandi.execution.paper`."""

from mandi.execution.paper import MemoryPaperBook, PaperBook, PaperBroker, PaperOrder

__all__ = ["MemoryPaperBook", "PaperBook", "PaperBroker", "PaperOrder"]
