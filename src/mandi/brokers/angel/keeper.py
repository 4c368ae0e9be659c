"""The Angel One session in a running node: the shared
:class:`~mandi.brokers.keeper.SessionKeeper`, renewing the JWT (and feed token) through
``generateTokens`` before it expires and failing closed when it cannot."""

from __future__ import annotations

from mandi.brokers import keeper
from mandi.brokers.angel import session as angel_session
from mandi.brokers.session import BrokerSession
from mandi.config import AngelConfig


class SessionKeeper(keeper.SessionKeeper):
    title = "Angel One"

    def __init__(self, cfg: AngelConfig, session: BrokerSession, offset_ns: int = 0) -> None:
        super().__init__(cfg, session, angel_session.refresh, offset_ns)
