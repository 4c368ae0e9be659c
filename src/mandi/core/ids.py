"""Deterministic identifiers.

Ids derived from content (``uuid5``) make retries idempotent: the same signal or order command
always gets the same id, so a replay can never create a second one.
"""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("6d616e64-692d-4d61-6e64-692d6d616e64")  # "mandi-..." in hex


def stable_id(*parts: object) -> str:
    """A UUID string that depends only on ``parts``."""
    return str(uuid.uuid5(_NAMESPACE, "|".join(map(str, parts))))
