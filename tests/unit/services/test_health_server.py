"""The services' /health server: a port already taken is one clear error, not a traceback."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from mandi.core.errors import MandiError
from mandi.services.distributed.health import HealthServer, ServiceState


def test_a_taken_port_is_one_error_naming_the_address_and_the_key() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        server = HealthServer(ServiceState("indengine"), "127.0.0.1", port, lambda: [])
        with pytest.raises(MandiError) as e:
            asyncio.run(server.start())
    text = str(e.value)
    assert f"127.0.0.1:{port}" in text and "services.indengine_port" in text, text
    assert "in use" in text, text


def test_port_zero_picks_a_free_port_and_answers_health() -> None:
    async def go() -> bytes:
        server = HealthServer(ServiceState("mdengine-sim"), "127.0.0.1", 0, lambda: [])
        await server.start()
        try:
            r, w = await asyncio.open_connection("127.0.0.1", server.port)
            w.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            await w.drain()
            body = await asyncio.wait_for(r.read(), 10)
            w.close()
            return body
        finally:
            await server.close()

    head, _, body = asyncio.run(go()).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert json.loads(body)["service"] == "mdengine-sim"
