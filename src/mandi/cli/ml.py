"""``mandi features``, ``mandi train`` and ``mandi serve-model``: the ML pipeline's commands."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from mandi.cli import ConfigOpt, app, fail, load
from mandi.core.errors import MandiError

DataOpt = Annotated[
    str,
    typer.Option(
        "--data",
        "-d",
        help="OHLCV CSV/Parquet, a feature Parquet from mandi features, or a mandi.db store.",
    ),
]
SymbolOpt = Annotated[
    str | None, typer.Option("--symbol", help="The series to use (a store holds many).")
]
TimeframeOpt = Annotated[
    int | None,
    typer.Option(help="Bar length in seconds (default: the file's own; 180 for a store)."),
]
VixOpt = Annotated[
    str | None,
    typer.Option("--vix", help="India VIX bars (CSV/Parquet/store) for the vix features."),
]
ChainsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--chains", help="Option-chain snapshots (a mandi.db or NSE/BSE files) for chain features."
    ),
]
UnderlyingOpt = Annotated[
    str | None, typer.Option(help="Underlying of the chains (default: the symbol).")
]
FeaturesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--features",
        "-f",
        help="Groups (bars,time,vix,chain) or feature names; default: every group the data has.",
    ),
]

EPILOG = (
    "Examples:\n\n"
    "  mandi features --data NIFTY50_3min.csv --vix INDIAVIX_3min.csv --out features.parquet\n\n"
    "  mandi train --data NIFTY50_3min.csv --vix INDIAVIX_3min.csv --model lightgbm "
    "--horizon 5 --folds 5 --out models/nifty\n\n"
    "  mandi train --data mandi.db --symbol NIFTY --model xgboost --horizon 5 --folds 3 "
    "--out models/alpha\n\n"
    "  mandi serve-model --model models/nifty --port 8501"
)


def parse_threshold(text: str) -> float | None:
    """``auto`` → None; ``0.05%`` → 0.0005; ``0.0005`` → 0.0005 (a log return)."""
    t = text.strip().lower()
    if t == "auto":
        return None
    try:
        return float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: use auto, a log return (0.0005) or a percent (0.05%)"
        ) from None


def _data(
    data: str,
    symbol: str | None,
    timeframe: int | None,
    vix: str | None,
    chains: list[str] | None,
    underlying: str | None,
    features: list[str] | None,
) -> tuple[Any, tuple[str, ...]]:
    from mandi.features import groups_of
    from mandi.ml.data import expand_features, load_training_data, resolve_names

    wanted = features or []
    groups = groups_of(expand_features(wanted)) if wanted else None
    td = load_training_data(
        data,
        symbol=symbol,
        timeframe=timeframe,
        vix=vix,
        chains=chains,
        underlying=underlying,
        with_vix=None if groups is None else "vix" in groups,
        with_chains=None if groups is None else "chain" in groups,
    )
    return td, resolve_names(td, wanted or None)


@app.command(epilog=EPILOG)
def features(
    data: DataOpt,
    out: Annotated[str, typer.Option("--out", "-o", help="Parquet file to write.")],
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    vix: VixOpt = None,
    chains: ChainsOpt = None,
    underlying: UnderlyingOpt = None,
    features: FeaturesOpt = None,
    horizon: Annotated[
        int | None, typer.Option(help="Also write forward returns and labels over N bars.")
    ] = None,
    threshold: Annotated[
        str, typer.Option(help="Label threshold: a log return, a percent (0.05%) or auto.")
    ] = "auto",
    tensors: Annotated[
        str | None,
        typer.Option(help="Also write seed 000's DL tensors of the chain (.npz) here."),
    ] = None,
    window: Annotated[int, typer.Option(help="Time steps per DL tensor.")] = 20,
) -> None:
    """Compute features (the same code as the live strategies) and write them as Parquet."""
    import numpy as np
    from rich.console import Console

    console = Console(stderr=True)
    try:
        t0 = time.perf_counter()
        td, names = _data(data, symbol, timeframe, vix, chains, underlying, features)
        from mandi.ml.data import feature_frame, write_feature_parquet

        frame = feature_frame(td, names)
        extra: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {}
        if horizon:
            from mandi.features.labels import forward_returns

            r, _ = forward_returns(frame.bucket, frame.close, frame.timeframe, horizon)
            thr = parse_threshold(threshold)
            if thr is None:  # auto: a third of the labelled bars neutral
                thr = float(np.nanquantile(np.abs(r), 1 / 3)) if np.isfinite(r).any() else 0.0
            y = np.full(len(r), -1, dtype=np.int8)
            ok = np.isfinite(r)
            y[ok] = 1
            y[ok & (r > thr)] = 2
            y[ok & (r < -thr)] = 0
            extra = {f"fwd_ret_{horizon}": r, f"label_{horizon}": y}
            meta = {"horizon": horizon, "threshold": thr, "labels": ["down", "neutral", "up"]}
        write_feature_parquet(frame, out, meta, extra)
        complete = int(frame.complete().sum())
        console.print(
            f"{len(frame):,} bars of {frame.symbol} ({frame.timeframe} s), {len(names)} features "
            f"({complete:,} complete rows) → {out} in {time.perf_counter() - t0:.1f} s"
        )
        if tensors:
            n = _write_tensors(td, frame, tensors, window)
            console.print(f"{n:,} DL tensors ({window} steps) → {tensors}")
    except (MandiError, OSError) as e:
        fail(e)


def _write_tensors(td: Any, frame: Any, path: str, window: int) -> int:
    """One tensor per bar end from the chains (the nearest expiry), as ``.npz``."""
    import numpy as np

    from mandi.core.errors import DataError
    from mandi.features import build_dl_tensor
    from mandi.features.chain import feature_matrix_config
    from mandi.options.chain import ChainMatrix

    if not td.chains:
        raise DataError("--tensors needs option chains (--chains or a store that has them)")
    snaps = sorted(td.chains, key=lambda s: s.ts_event)
    matrix = ChainMatrix(feature_matrix_config())
    values, masks, times = [], [], []
    i = 0
    for end in frame.end.tolist():
        while i < len(snaps) and snaps[i].ts_event <= end:
            matrix.process_option_chain(snaps[i].underlying, snaps[i], notify=False)
            i += 1
        keys = [k for k in matrix.keys() if k[1] >= _day(end)]  # noqa: SIM118 - a method
        if not keys:
            continue
        t = build_dl_tensor(matrix.history(*min(keys, key=lambda k: k[1])), window=window)
        values.append(t.values)
        masks.append(t.mask)
        times.append(end)
    if not values:
        raise DataError("no bar has an option chain before it: no tensors")
    np.savez_compressed(
        path,
        X=np.stack(values),
        mask=np.stack(masks),
        time_ns=np.array(times, dtype=np.int64),
        channels=np.array(t.channels),
        strike_offsets=t.offsets,
    )
    return len(values)


def _day(ns: int) -> Any:
    from mandi.core.calendar import ist_date

    return ist_date(ns)


@app.command(epilog=EPILOG)
def train(
    data: DataOpt,
    out: Annotated[str, typer.Option("--out", "-o", help="Model directory to write.")],
    model: Annotated[str, typer.Option(help="lightgbm | xgboost.")] = "lightgbm",
    horizon: Annotated[int, typer.Option(help="Label horizon in bars.")] = 5,
    folds: Annotated[int, typer.Option(help="Walk-forward test folds.")] = 5,
    symbol: SymbolOpt = None,
    timeframe: TimeframeOpt = None,
    vix: VixOpt = None,
    chains: ChainsOpt = None,
    underlying: UnderlyingOpt = None,
    features: FeaturesOpt = None,
    threshold: Annotated[
        str,
        typer.Option(
            help="Up/down threshold: a log return (0.0005), a percent (0.05%), or auto "
            "(a third of the first training block neutral)."
        ),
    ] = "auto",
    embargo: Annotated[
        int | None, typer.Option(help="Bars dropped before each test block (≥ horizon).")
    ] = None,
    trees: Annotated[int, typer.Option(help="Boosting rounds.")] = 200,
    confidence: Annotated[
        float, typer.Option(help="Probability to trade in the report's P&L.")
    ] = 0.6,
    qty: Annotated[int, typer.Option("--qty", help="Units per trade in the report's P&L.")] = 65,
    threads: Annotated[int, typer.Option(help="Library threads.")] = 1,
    name: Annotated[str, typer.Option(help="Model name (default symbol-model-hN).")] = "",
    controls: Annotated[
        bool, typer.Option(help="Also fit the shuffled-label control per fold.")
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Walk-forward training with baselines; writes the model, report.json and report.html."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from mandi.ml.train import BASELINES, TrainConfig, save
    from mandi.ml.train import train as run_training

    console = Console(stderr=True)
    try:
        cfg = TrainConfig(
            model=model,
            horizon=horizon,
            folds=folds,
            threshold=parse_threshold(threshold),
            embargo=embargo,
            trees=trees,
            confidence=confidence,
            quantity=qty,
            threads=threads,
            controls=controls,
        )
        td, names = _data(data, symbol, timeframe, vix, chains, underlying, features)
        stages = 1 + len(BASELINES if controls else BASELINES[:3])
        progress = Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
            disable=quiet,
        )
        tasks: dict[int, tuple[Any, int]] = {}  # fold → (progress task, its stages)

        def finish_all() -> None:
            for t, n in tasks.values():
                progress.update(t, completed=n)

        def on_fold(fold: int, total: int, stage: str) -> None:
            """Called as each stage (the model, each baseline, the final model) starts."""
            if fold in tasks:
                progress.advance(tasks[fold][0])
                return
            finish_all()
            n = 1 if fold == total else stages
            label = "final model" if fold == total else f"fold {fold}/{total - 1}"
            tasks[fold] = (progress.add_task(label, total=n), n)

        t0 = time.perf_counter()
        with progress:
            res = run_training(td, names, cfg, name=name, on_fold=on_fold)
            finish_all()
        save(res, out)
        _print_report(res.report, console)
        console.print(
            f"model {res.report['name']} → {out} (report.json, report.html) in "
            f"{time.perf_counter() - t0:.1f} s"
        )
    except (MandiError, OSError) as e:
        fail(e)


def _print_report(report: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    def f(x: Any, d: int = 3) -> str:
        return "–" if x is None else (f"{x:,.{d}f}" if isinstance(x, float) else str(x))

    t = Table(title=f"{report['name']}: out of sample, {len(report['folds'])} folds")
    for col in ("model", "AUC", "AUC pooled", "log loss", "accuracy", "hit rate", "trades"):
        t.add_column(col, justify="right")
    t.add_column("P&L ₹ net", justify="right")
    for m, s in report["summary"].items():
        t.add_row(
            report["model"] if m == "model" else m,
            f(s["auc_mean"]),
            f(s["auc_pooled"]),
            f(s["log_loss_mean"]),
            f(s["accuracy_mean"]),
            f(s["hit_rate_mean"]),
            str(s["trades"]),
            f(s["pnl_inr"], 2),
        )
    type(console)().print(t)
    ft = Table(title="folds")
    for col in ("fold", "train", "test", "AUC", "log loss", "accuracy", "trades", "P&L ₹"):
        ft.add_column(col, justify="right")
    for r in report["folds"]:
        ft.add_row(
            str(r["fold"]),
            f"{r['train_start'][:10]} → {r['train_end'][:10]}",
            f"{r['test_start'][:10]} → {r['test_end'][:10]}",
            f(r["auc"]),
            f(r["log_loss"]),
            f(r["accuracy"]),
            str(r["trades"]),
            f(r["pnl_inr"], 2),
        )
    type(console)().print(ft)


@app.command("serve-model")
def serve_model(
    model: Annotated[str, typer.Option("--model", "-m", help="Model directory (mandi train).")],
    port: Annotated[int, typer.Option(help="Port.")] = 8501,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    db: Annotated[
        str | None, typer.Option(help="A mandi.db to build features for {symbol} requests.")
    ] = None,
    config: ConfigOpt = None,
    tokens_file: Annotated[
        str | None, typer.Option("--tokens-file", help="API tokens (web.tokens_file).")
    ] = None,
) -> None:
    """Serve a model over HTTP: POST /predict (read token), GET /health."""
    cfg = load(config, {"web.tokens_file": tokens_file})
    from mandi.logs import setup_logging

    setup_logging(cfg.log.level, cfg.log.json)
    try:
        from mandi.ml.registry import load_model
        from mandi.ml.server import serve

        loaded = load_model(model)
        typer.echo(
            json.dumps({"model": loaded.name, "host": host, "port": port}),
            err=True,
        )
        serve(loaded, host, port, cfg.web.tokens_file, db)
    except MandiError as e:
        fail(e)
    except KeyboardInterrupt:
        pass
