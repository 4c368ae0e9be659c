"""A local stand-in for nseindia.com and api.bseindia.com that replays the real option-chain files
of tests/data/option_chain: the option-chain page sets the cookies, the API answers only with
them (401 otherwise, as NSE does), and ``mode`` switches to what NSE does on a bad day: a
changed JSON format, its HTML bot wall, or 403."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

DATA = Path(__file__).resolve().parents[1] / "data" / "option_chain"


def _read(name: str) -> bytes:
    raw = (DATA / name).read_bytes()
    return gzip.decompress(raw) if name.endswith(".gz") else raw


class NseReplay:
    name = "nse"

    def __init__(self) -> None:
        self.mode = "ok"  # ok | changed | html | blocked
        self.hits: dict[str, int] = {}
        self.v3 = _read("nse_oc_v3_NIFTY_2026-07-10_1530_exp2026-07-14.json")
        self.legacy = {
            "NIFTY": _read("nse_oc_indices_NIFTY_2025-07-16_1530.json.gz"),
            "BANKNIFTY": _read("nse_oc_indices_BANKNIFTY_2025-07-16_1530.json.gz"),
        }
        self.bse = _read("bse_oc_SENSEX_2026-07-10_exp2026-07-16.json")
        self.app = Starlette(
            routes=[
                Route("/option-chain", self.page),
                Route("/api/option-chain-contract-info", self.info),
                Route("/api/option-chain-v3", self.chain_v3),
                Route("/api/option-chain-indices", self.chain_legacy),
                Route("/BseIndiaAPI/api/ddlExpiry_IV/w", self.bse_expiries),
                Route("/BseIndiaAPI/api/DerivOptionChain_IV/w", self.bse_chain),
            ]
        )

    def env(self, rest_url: str, ws_url: str) -> dict[str, str]:
        return {"MANDI_NSE__URL": rest_url, "MANDI_NSE__BSE_URL": rest_url}

    def _count(self, request: Request) -> None:
        self.hits[request.url.path] = self.hits.get(request.url.path, 0) + 1

    async def page(self, request: Request) -> Response:
        self._count(request)
        r = HTMLResponse("<html><body>Option Chain</body></html>")
        r.set_cookie("nsit", "abc")
        r.set_cookie("nseappid", "def")
        return r

    def _gate(self, request: Request) -> Response | None:
        self._count(request)
        if "Mozilla" not in request.headers.get("user-agent", ""):
            return PlainTextResponse("Resource not found", 404)
        if self.mode == "blocked":
            return PlainTextResponse("Access Denied", 403)
        if self.mode == "html":
            return HTMLResponse("<html><head><title>Access Denied</title></head></html>")
        if not request.cookies.get("nsit") or not request.cookies.get("nseappid"):
            return JSONResponse({}, 401)
        return None

    async def info(self, request: Request) -> Response:
        if (r := self._gate(request)) is not None:
            return r
        return JSONResponse({"expiryDates": ["14-Jul-2026", "21-Jul-2026"], "strikePrice": []})

    async def chain_v3(self, request: Request) -> Response:
        if (r := self._gate(request)) is not None:
            return r
        if self.mode == "changed":
            return JSONResponse({"records": {"rows": []}, "meta": {"version": 4}})
        doc: dict[str, Any] = json.loads(self.v3)
        if request.query_params.get("expiry") != "14-Jul-2026":
            doc["data"] = []  # the second expiry: listed but empty in the replay
        return Response(json.dumps(doc).encode(), media_type="application/json")

    async def chain_legacy(self, request: Request) -> Response:
        if (r := self._gate(request)) is not None:
            return r
        return Response(self.legacy[request.query_params["symbol"]], media_type="application/json")

    async def bse_expiries(self, request: Request) -> Response:
        self._count(request)
        if request.headers.get("referer") != "https://www.bseindia.com/":
            return PlainTextResponse("Forbidden", 403)
        return JSONResponse({"Table1": [{"ExpiryDate": "16 Jul 2026"}]})

    async def bse_chain(self, request: Request) -> Response:
        self._count(request)
        if request.headers.get("referer") != "https://www.bseindia.com/":
            return PlainTextResponse("Forbidden", 403)
        return Response(self.bse, media_type="application/json")
