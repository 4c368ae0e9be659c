"""Walk-forward training of LightGBM / XGBoost alpha models, with honest baselines (shell).

For each purged, embargoed walk-forward fold (:func:`mandi.features.walk_forward`) the model is
fitted on the training days and scored on the test days it never saw — beside four baselines on
the very same rows: the majority class of the training days, the sign of the momentum over the
label horizon, a logistic regression on the same features, and the same model fitted on
shuffled labels (a control that must score at chance). Hyper-parameters are fixed before any
test fold is seen; the label threshold (``auto``) comes from the first training block only.

Per fold and model: AUC (one-vs-rest, macro over the classes present), log loss, accuracy, the
hit rate of confident directional predictions, and the P&L of trading the signal — enter at the
decision bar's close when the up/down probability reaches ``confidence``, exit ``horizon`` bars
later, one position at a time, ``quantity`` units with ``slippage_ticks`` against each fill,
net of Indian futures charges (:class:`~mandi.execution.charges.ChargesModel`) on both fills.
The final model is then fitted on every labelled row and saved to the registry.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mandi.core.calendar import ist_date
from mandi.core.errors import ConfigError, DataError
from mandi.features import FeatureFrame, walk_forward
from mandi.features.bars import ist_day
from mandi.features.labels import CLASSES, DOWN, NEUTRAL, UP, forward_returns
from mandi.ml.data import TrainingData, feature_frame
from mandi.ml.registry import Manifest, feature_code_hash, library_versions, now_iso, save_model

KINDS = ("lightgbm", "xgboost")
BASELINES = ("majority", "momentum", "logistic", "shuffled")
_IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


@dataclass(frozen=True)
class TrainConfig:
    """Everything fixed before training (nothing here is chosen on a test fold)."""

    model: str = "lightgbm"
    horizon: int = 5
    folds: int = 5
    threshold: float | None = None  # log return; None = auto (first training block)
    embargo: int | None = None  # bars; None = the horizon
    trees: int = 200
    learning_rate: float = 0.05
    num_leaves: int = 15  # LightGBM
    max_depth: int = 4  # XGBoost
    min_child_samples: int = 50
    confidence: float = 0.6
    quantity: int = 65  # one NIFTY lot (from Jan 2026)
    slippage_ticks: int = 1
    tick_paise: int = 5
    threads: int = 1  # OpenMP spins: on a busy machine 2 threads can be 10x slower than 1
    seed: int = 0
    controls: bool = True  # the shuffled-label control

    def __post_init__(self) -> None:
        checks = {
            "model": (self.model in KINDS, f"use {' or '.join(KINDS)}"),
            "horizon": (self.horizon >= 1, "must be ≥ 1 bar"),
            "folds": (self.folds >= 1, "must be ≥ 1"),
            "trees": (self.trees >= 1, "must be ≥ 1"),
            "learning_rate": (0 < self.learning_rate <= 1, "must be in (0, 1]"),
            "confidence": (0 < self.confidence <= 1, "must be in (0, 1]"),
            "quantity": (self.quantity >= 1, "must be ≥ 1"),
            "threads": (self.threads >= 1, "must be ≥ 1"),
        }
        for key, (ok, why) in checks.items():
            if not ok:
                raise ConfigError(key, getattr(self, key), why)
        if self.threshold is not None and not (
            self.threshold >= 0 and math.isfinite(self.threshold)
        ):
            raise ConfigError("threshold", self.threshold, "must be a finite log return ≥ 0")


@dataclass
class TrainResult:
    report: dict[str, Any]
    booster: Any
    manifest: Manifest
    frame: FeatureFrame
    predictions: dict[str, NDArray[np.float64]] = field(default_factory=dict)


def iso(ts_ns: int) -> str:
    return dt.datetime.fromtimestamp(ts_ns / 1e9, _IST).isoformat(timespec="seconds")


# --- models --------------------------------------------------------------------------------------


def fit(cfg: TrainConfig, X: NDArray[np.float64], y: NDArray[np.int8]) -> Any:
    """Fit the configured library on (X, y) with the fixed hyper-parameters."""
    if cfg.model == "lightgbm":
        import lightgbm as lgb

        params = {
            "objective": "multiclass",
            "num_class": 3,
            "learning_rate": cfg.learning_rate,
            "num_leaves": cfg.num_leaves,
            "min_data_in_leaf": cfg.min_child_samples,
            "feature_fraction": 0.9,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "lambda_l2": 1.0,
            "num_threads": cfg.threads,
            "seed": cfg.seed,
            "deterministic": True,
            "force_col_wise": True,
            "verbose": -1,
        }
        return lgb.train(params, lgb.Dataset(X, y.astype(np.int32)), num_boost_round=cfg.trees)
    import xgboost as xgb

    params = {
        "objective": "multi:softprob",
        "num_class": 3,
        "eta": cfg.learning_rate,
        "max_depth": cfg.max_depth,
        "min_child_weight": max(1.0, cfg.min_child_samples / 10),
        "subsample": 0.8,
        "colsample_bytree": 0.9,
        "lambda": 1.0,
        "nthread": cfg.threads,
        "seed": cfg.seed,
        "tree_method": "hist",
        "verbosity": 0,
    }
    return xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=cfg.trees)


def predict(cfg: TrainConfig, booster: Any, X: NDArray[np.float64]) -> NDArray[np.float64]:
    X = np.ascontiguousarray(X, dtype=np.float64)
    if cfg.model == "lightgbm":
        return np.asarray(booster.predict(X), dtype=np.float64)
    p = np.asarray(booster.inplace_predict(X), dtype=np.float64)
    # XGBoost's float32 rows sum to 1 ± 1e-7 (sklearn's log loss warns about it)
    return np.asarray(p / p.sum(axis=1, keepdims=True), dtype=np.float64)


def importance(cfg: TrainConfig, booster: Any, names: tuple[str, ...]) -> dict[str, float]:
    """Gain importance per feature, as shares of the total."""
    if cfg.model == "lightgbm":
        gain = np.asarray(booster.feature_importance("gain"), dtype=np.float64)
    else:
        score = booster.get_score(importance_type="total_gain")
        gain = np.array([score.get(f"f{i}", 0.0) for i in range(len(names))])
    total = gain.sum() or 1.0
    return {n: round(float(g / total), 6) for n, g in zip(names, gain, strict=True)}


# --- metrics -------------------------------------------------------------------------------------


def auc_ovr(y: NDArray[np.int8], proba: NDArray[np.float64]) -> float:
    """Macro one-vs-rest AUC over the classes present in ``y`` with both outcomes; NaN if none."""
    from sklearn.metrics import roc_auc_score

    scores = []
    for c in range(proba.shape[1]):
        pos = y == c
        if 0 < pos.sum() < len(y):
            scores.append(float(roc_auc_score(pos, proba[:, c])))
    return float(np.mean(scores)) if scores else math.nan


def class_metrics(
    y: NDArray[np.int8], proba: NDArray[np.float64], confidence: float
) -> dict[str, Any]:
    from sklearn.metrics import log_loss

    pred = proba.argmax(axis=1)
    top = proba.max(axis=1)
    sure = (top >= confidence) & (pred != NEUTRAL)
    return {
        "auc": _r(auc_ovr(y, proba)),
        "log_loss": _r(float(log_loss(y, np.clip(proba, 1e-15, 1), labels=[0, 1, 2]))),
        "accuracy": _r(float((pred == y).mean())),
        "confident": int(sure.sum()),
        "hit_rate": _r(float((pred[sure] == y[sure]).mean())) if sure.any() else None,
    }


def _r(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def signal_pnl(
    cfg: TrainConfig,
    proba: NDArray[np.float64],
    pos: NDArray[np.int64],
    frame: FeatureFrame,
    charges: Any,
) -> dict[str, Any]:
    """Trade the signal on test rows (see the module docstring); rupees."""
    from mandi.model.orders import Side

    pred = proba.argmax(axis=1)
    top = proba.max(axis=1)
    close = frame.close
    bucket = frame.bucket
    h, qty, slip = cfg.horizon, cfg.quantity, cfg.slippage_ticks * cfg.tick_paise
    free_from = -1
    gross = cost = 0
    trades = wins = 0
    curve: list[tuple[int, float]] = []
    for k in range(len(pos)):
        p = int(pos[k])
        if p < free_from or top[k] < cfg.confidence or pred[k] == NEUTRAL:
            continue
        d = 1 if pred[k] == UP else -1
        entry = int(close[p]) + d * slip
        exit_ = int(close[p + h]) - d * slip
        day = ist_date(int(bucket[p]))
        side_in, side_out = (Side.BUY, Side.SELL) if d > 0 else (Side.SELL, Side.BUY)
        c = (
            charges.compute(
                exchange="NSE", segment="FUT", side=side_in, quantity=qty, price=entry, day=day
            ).total
            + charges.compute(
                exchange="NSE", segment="FUT", side=side_out, quantity=qty, price=exit_, day=day
            ).total
        )
        g = d * (exit_ - entry) * qty
        gross += g
        cost += c
        trades += 1
        wins += g - c > 0
        curve.append((int(bucket[p + h]), (gross - cost) / 100.0))
        free_from = p + h
    return {
        "pnl_inr": round((gross - cost) / 100.0, 2),
        "gross_pnl_inr": round(gross / 100.0, 2),
        "charges_inr": round(cost / 100.0, 2),
        "trades": trades,
        "win_rate": _r(wins / trades) if trades else None,
        "curve": curve,
    }


# --- baselines -----------------------------------------------------------------------------------


def _one_hot(cls: NDArray[np.int64]) -> NDArray[np.float64]:
    out = np.zeros((len(cls), 3))
    out[np.arange(len(cls)), cls] = 1.0
    return out


def baseline_proba(
    name: str,
    cfg: TrainConfig,
    X: NDArray[np.float64],
    y: NDArray[np.int8],
    train: NDArray[np.int64],
    test: NDArray[np.int64],
    momentum: NDArray[np.float64],
    threshold: float,
    rng: np.random.Generator,
) -> NDArray[np.float64]:
    if name == "majority":
        freq = np.bincount(y[train], minlength=3) / len(train)
        return np.tile(freq, (len(test), 1))
    if name == "momentum":
        m = momentum[test]
        cls = np.full(len(test), NEUTRAL)
        cls[m > threshold] = UP
        cls[m < -threshold] = DOWN
        return _one_hot(cls)
    if name == "logistic":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=1.0))
        clf.fit(X[train], y[train])
        out = np.zeros((len(test), 3))
        out[:, clf.classes_] = clf.predict_proba(X[test])
        return out
    if name == "shuffled":
        booster = fit(cfg, X[train], rng.permutation(y[train]))
        return predict(cfg, booster, X[test])
    raise ValueError(name)


# --- the walk-forward ----------------------------------------------------------------------------


def _check_columns(frame: FeatureFrame, usable_label: NDArray[np.bool_]) -> None:
    X = frame.X[usable_label]
    never = [n for j, n in enumerate(frame.names) if not np.isfinite(X[:, j]).any()]
    if never:
        raise DataError(
            f"feature(s) {', '.join(never)} are never known on the labelled bars "
            "(no data for them in this period?); leave them out with --features"
        )
    rows = frame.complete() & usable_label
    constant = [
        n for j, n in enumerate(frame.names) if rows.any() and np.ptp(frame.X[rows, j]) == 0
    ]
    if constant:
        raise DataError(
            f"feature(s) {', '.join(constant)} are constant over the {int(rows.sum())} usable "
            "rows (nothing to learn from); leave them out with --features"
        )


def train(
    td: TrainingData,
    names: tuple[str, ...],
    cfg: TrainConfig,
    *,
    name: str = "",
    on_fold: Callable[[int, int, str], None] | None = None,
) -> TrainResult:
    """Walk-forward evaluation, then the final model (see the module docstring)."""
    from mandi.execution.charges import ChargesModel

    t0 = time.perf_counter()
    frame = feature_frame(td, names)
    tf, h = frame.timeframe, cfg.horizon
    fwd, dropped = forward_returns(frame.bucket, frame.close, tf, h)
    labelled = np.isfinite(fwd)
    _check_columns(frame, labelled)
    complete = frame.complete()
    usable = labelled & complete
    pos = np.flatnonzero(usable).astype(np.int64)
    days = ist_day(frame.bucket[pos])
    folds = walk_forward(pos, days, cfg.folds, h, cfg.embargo)
    r = fwd[pos]
    # the threshold: fixed, or from the first training block (never a test fold)
    first_block = folds[0].train
    thr = (
        cfg.threshold
        if cfg.threshold is not None
        else float(np.quantile(np.abs(r[first_block]), 1 / 3))
    )
    y = np.full(len(pos), NEUTRAL, dtype=np.int8)
    y[r > thr] = UP
    y[r < -thr] = DOWN
    X = frame.X[pos]
    log_c = np.log(frame.close.astype(np.float64))
    momentum = np.full(len(pos), np.nan)
    ok = pos >= h
    momentum[ok] = log_c[pos[ok]] - log_c[pos[ok] - h]
    charges = ChargesModel()
    rng = np.random.default_rng(cfg.seed)
    baselines = BASELINES if cfg.controls else BASELINES[:3]
    fold_rows: list[dict[str, Any]] = []
    base_rows: dict[str, list[dict[str, Any]]] = {b: [] for b in baselines}
    oos = {m: np.zeros((0, 3)) for m in ("model", *baselines)}
    oos_y = np.zeros(0, dtype=np.int8)
    curves: dict[str, list[tuple[int, float]]] = {m: [] for m in ("model", *baselines)}
    offset = dict.fromkeys(curves, 0.0)
    steps = len(folds) + 1
    for f in folds:
        if on_fold:
            on_fold(f.number, steps, f"fold {f.number}/{len(folds)}: {cfg.model}")
        booster = fit(cfg, X[f.train], y[f.train])
        proba = predict(cfg, booster, X[f.test])
        row = {
            "fold": f.number,
            "train_start": iso(int(frame.bucket[pos[f.train[0]]])),
            "train_end": iso(int(frame.bucket[pos[f.train[-1]]])),
            "test_start": iso(int(frame.bucket[pos[f.test[0]]])),
            "test_end": iso(int(frame.bucket[pos[f.test[-1]]])),
            "train_rows": len(f.train),
            "test_rows": len(f.test),
            "purged": f.purged,
            "test_classes": np.bincount(y[f.test], minlength=3).tolist(),
        }
        all_probas = {"model": proba}
        for b in baselines:
            if on_fold:
                on_fold(f.number, steps, f"fold {f.number}/{len(folds)}: {b}")
            all_probas[b] = baseline_proba(b, cfg, X, y, f.train, f.test, momentum, thr, rng)
        for m, pr in all_probas.items():
            met = class_metrics(y[f.test], pr, cfg.confidence)
            pnl = signal_pnl(cfg, pr, pos[f.test], frame, charges)
            curve = pnl.pop("curve")
            curves[m] += [(t, v + offset[m]) for t, v in curve]
            offset[m] += pnl["pnl_inr"]
            met.update(pnl)
            oos[m] = np.vstack([oos[m], pr])
            if m == "model":
                row.update(met)
            else:
                base_rows[m].append({"fold": f.number, **met})
        oos_y = np.concatenate([oos_y, y[f.test]])
        fold_rows.append(row)
    if on_fold:
        on_fold(steps, steps, "final model on every labelled row")
    final = fit(cfg, X, y)
    summary = {m: _summary(fold_rows if m == "model" else base_rows[m], oos[m], oos_y) for m in oos}
    seconds = round(time.perf_counter() - t0, 2)
    window = {
        "start": iso(int(frame.bucket[pos[0]])),
        "end": iso(int(frame.bucket[pos[-1]])),
        "rows": len(pos),
    }
    created = now_iso()
    code_hash = feature_code_hash()
    underlying = td.underlying if td.chains else ""
    model_name = name or f"{frame.symbol or 'model'}-{cfg.model}-h{h}"
    params = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}
    params["threshold"] = thr
    counts = np.bincount(y, minlength=3).tolist()
    report = {
        "name": model_name,
        "model": cfg.model,
        "created": created,
        "symbol": frame.symbol,
        "underlying": underlying,
        "data": list(td.sources),
        "timeframe": tf,
        "horizon": h,
        "threshold": thr,
        "classes": list(CLASSES),
        "class_counts": dict(zip(CLASSES, counts, strict=True)),
        "features": list(frame.names),
        "feature_hash": code_hash,
        "rows": {
            "bars": len(frame),
            "labelled": int(labelled.sum()),
            "used": len(pos),
            "missing_features": int((labelled & ~complete).sum()),
            "no_label": dropped,
        },
        "folds": fold_rows,
        "baselines": {b: {"folds": base_rows[b], "summary": summary[b]} for b in baselines},
        "summary": summary,
        "final_model": window,
        "importance": importance(cfg, final, frame.names),
        "params": params,
        "versions": library_versions(),
        "seconds": seconds,
        "curves": {m: [(iso(t), v) for t, v in c] for m, c in curves.items()},
        "notes": [
            "out-of-sample: every fold's test days come after its training days; training rows "
            f"within {h} + {cfg.embargo or h} bars of a test block are purged",
            "P&L trades the signal as a futures proxy at the index price, one position at a time, "
            f"{cfg.quantity} units, {cfg.slippage_ticks} tick(s) slippage per fill, net of "
            "NSE futures charges (brokerage, STT, exchange, SEBI, stamp duty, GST)",
            "hyper-parameters are fixed; the label threshold comes from the first training "
            "block only",
        ],
    }
    manifest = Manifest(
        name=model_name,
        kind=cfg.model,
        features=list(frame.names),
        feature_hash=code_hash,
        timeframe=tf,
        horizon=h,
        threshold=thr,
        created=created,
        training_window=window,
        symbol=frame.symbol,
        underlying=underlying,
        metrics=summary["model"],
        params=params,
        data=list(td.sources),
    )
    return TrainResult(report, final, manifest, frame, {"oos_y": oos_y.astype(np.float64), **oos})


def _summary(
    rows: list[dict[str, Any]], proba: NDArray[np.float64], y: NDArray[np.int8]
) -> dict[str, Any]:
    def mean(key: str) -> float | None:
        vals = [r[key] for r in rows if r.get(key) is not None]
        return _r(float(np.mean(vals))) if vals else None

    return {
        "auc_mean": mean("auc"),
        "auc_pooled": _r(auc_ovr(y, proba)) if len(y) else None,
        "log_loss_mean": mean("log_loss"),
        "accuracy_mean": mean("accuracy"),
        "hit_rate_mean": mean("hit_rate"),
        "pnl_inr": round(sum(r["pnl_inr"] for r in rows), 2),
        "charges_inr": round(sum(r["charges_inr"] for r in rows), 2),
        "trades": sum(r["trades"] for r in rows),
    }


def save(result: TrainResult, out: str) -> None:
    """The model, its manifest, ``report.json`` and ``report.html`` into ``out``."""
    import json
    from pathlib import Path

    from mandi.ml.report import write_html

    d = save_model(out, result.booster, result.manifest)
    (Path(d) / "report.json").write_text(json.dumps(result.report, indent=1), encoding="utf-8")
    write_html(result.report, Path(d) / "report.html")
