"""``mandi serve-model``: a loaded model over HTTP (seed 001's model server).

* ``GET /health`` — liveness and what is loaded (no authentication, no secrets): model name,
  kind, date, features, and the counts of predictions and rejected requests.
* ``POST /predict`` — class probabilities, for a ``read`` token (``Authorization: Bearer``, the
  tokens of ``mandi token``). The body is one of::

      {"features": {"ret_1": 0.0012, ...}}          one feature row (every feature, no other)
      {"rows": [{...}, {...}]}                       several rows
      {"symbol": "NIFTY"}                            the latest row of a symbol, built from the
                                                     store given with --db (what mandi run writes)

  A row with missing or unknown features, or a value that is not a finite number, is refused
  with HTTP 422 naming the fields — never a default prediction.

Predictions use the same :meth:`~mandi.ml.registry.Model.predict_proba` as the strategies, so a
probability over HTTP is the in-process one, to the last bit (JSON floats round-trip).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from mandi.core.errors import MandiError
from mandi.ml.registry import Model

log = logging.getLogger(__name__)

MAX_ROWS = 10_000
HISTORY_BARS = 500  # RSI's smoothing forgets (13/14)^480 ≈ 1e-16 of older history
CHAIN_LOOKBACK_MIN = 45


class PredictError(MandiError):
    """A bad /predict request (HTTP 422): ``fields`` names what was wrong."""

    def __init__(self, code: str, message: str, fields: list[str] | None = None) -> None:
        self.code, self.fields = code, fields or []
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "message": str(self)}
        if self.fields:
            out["fields"] = self.fields
        return out


def row_from_mapping(model: Model, values: Any, where: str = "features") -> np.ndarray:
    """A feature row in the model's order from ``{name: number}``; PredictError otherwise."""
    if not isinstance(values, dict):
        raise PredictError("invalid_body", f"{where} must be an object of feature: number")
    names = model.feature_names
    missing = [n for n in names if n not in values]
    extra = sorted(k for k in values if k not in set(names))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing features: {', '.join(missing)}")
        if extra:
            parts.append(f"unknown features: {', '.join(str(x) for x in extra)}")
        raise PredictError(
            "bad_features",
            f"{where}: {'; '.join(parts)}",
            [f"{where}.{n}" for n in [*missing, *extra]],
        )
    bad = []
    row = np.empty(len(names))
    for i, n in enumerate(names):
        v = values[n]
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        if not ok:
            bad.append(n)
        else:
            row[i] = float(v)
    if bad:
        shown = ", ".join(f"{n} = {str(values[n])[:20]!r}" for n in bad[:5])
        raise PredictError(
            "bad_features",
            f"{where}: not a finite number: {shown}",
            [f"{where}.{n}" for n in bad],
        )
    return row


def prediction(model: Model, proba: np.ndarray) -> dict[str, Any]:
    k = int(np.argmax(proba))
    return {
        "model": model.name,
        "model_date": model.created[:10],
        "classes": list(model.classes),
        "probabilities": {c: float(p) for c, p in zip(model.classes, proba, strict=True)},
        "signal": model.labels[k],
        "confidence": float(proba[k]),
    }


class StoreFeatures:
    """The latest feature row of a symbol from a ``mandi.db`` store (read-only)."""

    def __init__(self, db: str, model: Model) -> None:
        self.db, self.model = db, model

    def latest(self, symbol: str) -> tuple[int, dict[str, float], np.ndarray | None]:
        from mandi.backtest.bars import BacktestError
        from mandi.core.clock import NS_PER_SECOND
        from mandi.features import build_features, groups_of
        from mandi.ml.data import is_vix
        from mandi.services.backtest.data import load_store_candles, load_store_chains

        m = self.model
        tf = m.timeframe
        try:
            series = load_store_candles(self.db, tf, (symbol,))
        except BacktestError as e:
            raise PredictError("no_data", str(e), ["symbol"]) from None
        s = series[0].take(slice(-HISTORY_BARS, None))
        groups = set(groups_of(m.feature_names))
        vix = chains = None
        if "vix" in groups:
            found = [v for v in load_store_candles(self.db, tf) if is_vix(v.symbol)]
            if not found:
                raise PredictError("no_data", f"{self.db}: no INDIA VIX candles", ["symbol"])
            vix = (found[0].bucket, found[0].close)
        end = int(s.bucket[-1]) + tf * NS_PER_SECOND
        if "chain" in groups:
            und = m.manifest.underlying or symbol
            chains = load_store_chains(
                self.db, end - CHAIN_LOOKBACK_MIN * 60 * NS_PER_SECOND, end + 1, und
            )
        f = build_features(
            m.feature_names,
            tf,
            s.bucket,
            s.open,
            s.high,
            s.low,
            s.close,
            vix=vix,
            chains=chains,
            underlying=m.manifest.underlying or symbol,
            symbol=symbol,
        )
        row = f.X[-1]
        values = {n: float(x) for n, x in zip(m.feature_names, row, strict=True)}
        return end, values, (row if np.isfinite(row).all() else None)


def make_app(model: Model, security: Any, db: str | None = None) -> Any:
    """The FastAPI application serving ``model``."""
    from mandi.web.security import AuthError, Security

    app = FastAPI(title="mandi model server", version="1", docs_url=None, redoc_url=None)
    started = time.monotonic()
    counts = {"predictions": 0, "rejected": 0, "unauthorized": 0}
    lock = threading.Lock()
    source = StoreFeatures(db, model) if db else None

    def count(key: str, n: int = 1) -> None:
        with lock:
            counts[key] += n

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, e: AuthError) -> JSONResponse:
        count("unauthorized")
        hdr = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
        return JSONResponse({"error": e.code, "message": str(e)}, status_code=e.status, headers=hdr)

    @app.exception_handler(PredictError)
    async def predict_error(request: Request, e: PredictError) -> JSONResponse:
        count("rejected")
        log.info("rejected /predict: %s", e)
        return JSONResponse(e.body(), status_code=422)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": model.describe(),
            "compiled": model.forest is not None,
            "uptime_s": round(time.monotonic() - started, 1),
            **counts,
        }

    @app.post("/predict")
    async def predict(request: Request) -> Any:
        p = security.authenticate(request.headers.get("authorization"), None)
        Security.require(p, "read")
        try:
            body = await request.json()
        except ValueError:
            raise PredictError("invalid_body", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise PredictError("invalid_body", "the body must be a JSON object")
        keys = [k for k in ("features", "rows", "symbol") if k in body]
        extra = sorted(k for k in body if k not in ("features", "rows", "symbol"))
        if len(keys) != 1 or extra:
            raise PredictError(
                "invalid_body",
                "send exactly one of features, rows or symbol"
                + (f" (unknown keys: {', '.join(map(str, extra))})" if extra else ""),
                [f"body.{k}" for k in extra] or ["body"],
            )
        if "features" in body:
            row = row_from_mapping(model, body["features"])
            count("predictions")
            return prediction(model, model.predict_proba(row))
        if "rows" in body:
            rows = body["rows"]
            if not isinstance(rows, list) or not rows or len(rows) > MAX_ROWS:
                raise PredictError(
                    "invalid_body", f"rows must be a list of 1 to {MAX_ROWS} objects", ["rows"]
                )
            X = np.array([row_from_mapping(model, r, f"rows[{i}]") for i, r in enumerate(rows)])
            count("predictions", len(X))
            return {"predictions": [prediction(model, model.predict_proba(x)) for x in X]}
        symbol = body["symbol"]
        if not isinstance(symbol, str) or not symbol:
            raise PredictError("invalid_body", "symbol must be a non-empty string", ["symbol"])
        if source is None:
            raise PredictError(
                "no_data",
                "this server has no store to build features from (start it with --db)",
                ["symbol"],
            )
        end, values, latest = source.latest(symbol)
        if latest is None:
            missing = [n for n, v in values.items() if not math.isfinite(v)]
            raise PredictError(
                "incomplete_features",
                f"{symbol}: not enough data for {', '.join(missing)} at the latest bar",
                [f"features.{n}" for n in missing],
            )
        from mandi.ml.train import iso

        count("predictions")
        out = prediction(model, model.predict_proba(latest))
        out.update(symbol=symbol, time=iso(end), features=values)
        return out

    return app


def serve(model: Model, host: str, port: int, tokens_file: str, db: str | None = None) -> None:
    """Run the server until interrupted (binds ``host``; a non-loopback host needs a token)."""
    import uvicorn

    from mandi.web.security import Security, TokenStore, check_bind

    tokens = TokenStore(tokens_file)
    check_bind(host, tokens)
    if not tokens.tokens():
        log.warning("no API token exists yet: every /predict will be refused (mandi token create)")
    app = make_app(model, Security(tokens), db)
    log.info(
        "serving model %s on http://%s:%d (POST /predict, GET /health)", model.name, host, port
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
