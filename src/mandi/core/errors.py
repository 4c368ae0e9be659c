"""The one exception tree of mandi.

Every error raised on purpose by mandi derives from :class:`MandiError`, so callers can catch the
whole family, and every message names the offending field and value.
"""

from __future__ import annotations


class MandiError(Exception):
    """Base of every error mandi raises on purpose."""


class ConfigError(MandiError):
    """A configuration key is unknown or its value is invalid (``show_value=False`` keeps a
    value that may be a secret out of the message)."""

    def __init__(self, key: str, value: object, reason: str, *, show_value: bool = True) -> None:
        self.key, self.value, self.reason = key, value, reason
        super().__init__(
            f"config {key} = {value!r}: {reason}" if show_value else f"config {key}: {reason}"
        )


class DataError(MandiError):
    """Input data (a tick, a file, a frame) is malformed."""


class BadTickError(DataError):
    """A tick failed validation; ``reason`` is the counted category."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"bad tick ({reason}){': ' + detail if detail else ''}")


class ParseError(DataError):
    """A wire payload or file could not be parsed."""


class InstrumentError(MandiError):
    """An instrument is unknown or inconsistent."""


class CalendarError(MandiError):
    """A date or time falls outside what the trading calendar knows."""


class StoreError(MandiError):
    """A storage backend failed or holds data it cannot read."""


class RowError(StoreError):
    """A store refused the rows written (a value it cannot hold, a wrong type or width), not
    the write itself: the other rows of the batch can still be stored."""


class OrderError(MandiError):
    """An order command is invalid or an order transition is illegal."""


class RiskError(MandiError):
    """The risk layer could not evaluate a command (it then fails closed)."""


class BusError(MandiError):
    """A message could not be routed or encoded."""


class BrokerError(MandiError):
    """A broker refused or failed a request. ``kind`` is the broker's own error type (Kite's
    ``error_type``) and ``status`` the HTTP status, when there was one."""

    def __init__(self, message: str, kind: str = "", status: int = 0) -> None:
        self.kind, self.status = kind, status
        super().__init__(message)


class BrokerSessionError(BrokerError):
    """The broker session is missing, expired or was invalidated (Kite ``TokenException``):
    log in again; never retried automatically."""


class BrokerInputError(BrokerError):
    """The broker rejected the request's parameters (Kite ``InputException``)."""


class BrokerOrderError(BrokerError):
    """The broker rejected an order operation (Kite ``OrderException``, ``MarginException``,
    ``HoldingException``)."""


class BrokerNetworkError(BrokerError):
    """The broker (or the way to it) failed: timeouts, 5xx, ``NetworkException``,
    ``GeneralException``, ``DataException``. The outcome of a send is unknown."""


class BrokerRateLimitError(BrokerNetworkError):
    """HTTP 429: too many requests; slow down and retry later."""
