"""System events: what happened to mandi itself (errors, rejects, lifecycle)."""

from __future__ import annotations

from typing import Any

import msgspec

from mandi.model.base import Message, message


@message
class SystemEvent(Message, frozen=True):
    """A lifecycle or fault event. ``kind`` is a stable machine-readable name
    (``handler_error``, ``tick_rejected``, ``started`` ...); ``severity`` is a logging level
    name."""

    ts_event: int
    kind: str
    message: str
    severity: str = "INFO"
    source: str = ""
    data: dict[str, Any] = msgspec.field(default_factory=dict)
