"""One codec for every bus message: msgpack on the wire, JSON for humans and browsers.

msgpack round-trips everything exactly; JSON has no NaN, so a NaN analytic (an IV that does not
exist) is written as ``null`` — JSON is an output format for browsers, msgpack is the bus format.

Encoders and decoders are created once and reused (msgspec's fast path). The decoder accepts the
tagged union of every registered message type (see :func:`mandi.model.base.message`), so a decoded
value is always the right class.
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

# Importing the message modules registers their types.
import mandi.model.events
import mandi.model.market  # noqa: F401
from mandi.model.base import MESSAGE_TYPES, Message


def _enc_hook(obj: object) -> object:
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


class Codec:
    """Encode/decode :class:`Message` values; ``decode_*`` raise ``msgspec.DecodeError`` or
    ``msgspec.ValidationError`` naming the bad field."""

    def __init__(self) -> None:
        self._mp_enc = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
        self._js_enc = msgspec.json.Encoder(enc_hook=_enc_hook)
        self._known = 0
        self._mp_dec: msgspec.msgpack.Decoder[Any] | None = None
        self._js_dec: msgspec.json.Decoder[Any] | None = None

    def _decoders(self) -> tuple[msgspec.msgpack.Decoder[Any], msgspec.json.Decoder[Any]]:
        if self._mp_dec is None or self._js_dec is None or self._known != len(MESSAGE_TYPES):
            union: Any = Union[tuple(MESSAGE_TYPES)]  # noqa: UP007 - a runtime union of classes
            self._mp_dec = msgspec.msgpack.Decoder(union)
            self._js_dec = msgspec.json.Decoder(union)
            self._known = len(MESSAGE_TYPES)
        return self._mp_dec, self._js_dec

    def encode(self, msg: Message) -> bytes:
        return self._mp_enc.encode(msg)

    def decode(self, data: bytes) -> Message:
        return self._decoders()[0].decode(data)  # type: ignore[no-any-return]

    def encode_json(self, msg: object) -> bytes:
        return self._js_enc.encode(msg)

    def decode_json(self, data: bytes | str) -> Message:
        return self._decoders()[1].decode(data)  # type: ignore[no-any-return]


codec = Codec()
"""The shared codec instance."""
