"""The base of every bus message and the registry the codec decodes from.

Messages are frozen, tagged ``msgspec.Struct``s. Data are nouns (``Tick``, ``Candle``), commands
imperative (``SubmitOrder``), events past tense (``OrderFilled``). Decorating a class with
:func:`message` registers it with the codec, so adding a message type never touches the codec.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec


class Message(msgspec.Struct, frozen=True, tag=True):
    """Base of all bus messages; the tag is the class name."""


M = TypeVar("M", bound=type[Message])
MESSAGE_TYPES: list[type[Message]] = []


def message(cls: M) -> M:
    """Class decorator: register a message type with the codec."""
    if cls not in MESSAGE_TYPES:
        MESSAGE_TYPES.append(cls)
    return cls
