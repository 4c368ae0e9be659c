"""Deterministic identifiers.

Ids derived from content (``uuid5``) make retries idempotent: the same signal or order command
always gets the same id, so a replay can never create a second one.
"""

from __future__ import annotations

import hashlib
import uuid

_NAMESPACE = uuid.UUID("6d616e64-692d-4d61-6e64-692d6d616e64")  # "mandi-..." in hex
_PREFIX = _NAMESPACE.bytes
_sha1 = hashlib.sha1


def stable_id(*parts: object) -> str:
    """A UUID string that depends only on ``parts``: ``str(uuid.uuid5(namespace, name))``,
    computed without the UUID object (ids are made on every order's path)."""
    name = "|".join(map(str, parts)).encode()
    h = bytearray(_sha1(_PREFIX + name, usedforsecurity=False).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50  # version 5
    h[8] = (h[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"
