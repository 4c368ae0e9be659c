"""The model registry: one directory per trained model.

::

    DIR/
      manifest.json     what the model is: kind, classes, feature list, the hash of the feature
                        code it was trained with, timeframe, horizon, training window, metrics,
                        library versions
      model.txt         LightGBM's text model    (or model.json: XGBoost's JSON model)
      report.json       the walk-forward report (mandi train)
      report.html       the same with plots

Models are stored in the libraries' own formats (never pickle: loading a model never runs
code). :func:`load_model` refuses — with one line naming what is wrong — a missing or corrupt
directory, and a model whose features do not match the running feature code.
"""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import json
import logging
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from mandi.core.errors import MandiError
from mandi.features import catalog
from mandi.features.labels import CLASS_LABELS, CLASSES

if TYPE_CHECKING:
    from mandi.ml.forest import Forest

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
MODEL_FILES = {"lightgbm": "model.txt", "xgboost": "model.json"}
#: the modules whose code defines the features (their hash is part of every model)
FEATURE_MODULES = ("catalog", "bars", "chain", "builder")


class ModelError(MandiError):
    """A model directory is missing, corrupt, or does not fit the running code."""


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            body[0] = ast.Pass()
    return tree


def feature_code_hash() -> str:
    """A hash of the feature code: the syntax trees (comments and docstrings left out) of the
    modules in :data:`FEATURE_MODULES`. Any change to how a feature is computed changes it."""
    import mandi.features as pkg

    h = hashlib.sha256()
    base = Path(pkg.__file__).parent
    for name in FEATURE_MODULES:
        src = (base / f"{name}.py").read_text(encoding="utf-8")
        h.update(name.encode())
        h.update(ast.dump(_strip_docstrings(ast.parse(src))).encode())
    return h.hexdigest()[:16]


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("lightgbm", "xgboost", "sklearn", "mandi"):
        try:
            out[mod] = str(__import__(mod).__version__)
        except (ImportError, AttributeError):
            out[mod] = ""
    return out


@dataclass
class Manifest:
    """``manifest.json``: everything needed to use and judge a model."""

    name: str
    kind: str
    features: list[str]
    feature_hash: str
    timeframe: int
    horizon: int
    threshold: float
    created: str
    training_window: dict[str, Any]
    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    symbol: str = ""
    underlying: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=library_versions)
    data: list[str] = field(default_factory=list)
    format: int = FORMAT

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def save_model(path: str | os.PathLike[str], booster: Any, manifest: Manifest) -> Path:
    """Write ``booster`` (a ``lightgbm.Booster`` or ``xgboost.Booster``) and its manifest."""
    d = Path(path)
    d.mkdir(parents=True, exist_ok=True)
    target = d / MODEL_FILES[manifest.kind]
    booster.save_model(str(target))
    tmp = d / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest.to_json(), indent=1), encoding="utf-8")
    tmp.replace(d / MANIFEST)  # the manifest last: a directory with one is complete
    return d


class Model:
    """A loaded model: :meth:`predict_proba` of one feature row (the strategies' hot path, on
    the compiled forest) or of many rows (the library's own predict)."""

    def __init__(self, path: Path, manifest: Manifest, booster: Any) -> None:
        self.path = path
        self.manifest = manifest
        self.booster = booster
        self.name = manifest.name
        self.kind = manifest.kind
        self.created = manifest.created
        self.feature_names = tuple(manifest.features)
        self.classes = tuple(manifest.classes)
        self.labels = tuple(CLASS_LABELS.get(c, c) for c in self.classes)
        self.timeframe = manifest.timeframe
        self.horizon = manifest.horizon
        self.forest = self._compile()

    def _compile(self) -> Forest | None:
        from mandi.ml.forest import ForestError, compile_lightgbm, compile_xgboost

        try:
            forest = (
                compile_lightgbm(self.booster)
                if self.kind == "lightgbm"
                else compile_xgboost(self.booster)
            )
        except ForestError as e:
            log.warning("model %s: using the library's predict (%s)", self.name, e)
            return None
        rng = np.random.default_rng(0)
        probe = rng.normal(size=(16, len(self.feature_names)))
        lib = self.predict_many(probe)
        mine = np.array([forest.predict_proba(r) for r in probe])
        tol = 1e-12 if self.kind == "lightgbm" else 1e-5  # XGBoost computes in float32
        if mine.shape != lib.shape or not np.allclose(mine, lib, rtol=0, atol=tol):
            log.warning("model %s: the compiled forest disagrees; using the library", self.name)
            return None
        return forest

    def predict_proba(self, row: NDArray[np.float64]) -> NDArray[np.float64]:
        """Class probabilities (in :attr:`classes` order) of one row of
        :attr:`feature_names`."""
        if self.forest is not None:
            return self.forest.predict_proba(row)
        many = self.predict_many(np.asarray(row, dtype=np.float64)[None, :])
        return np.asarray(many[0], dtype=np.float64)

    def predict_many(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        """Class probabilities of many rows, by the library itself."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if self.kind == "lightgbm":
            return np.asarray(self.booster.predict(X), dtype=np.float64)
        return np.asarray(self.booster.inplace_predict(X), dtype=np.float64)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "created": self.created,
            "date": self.created[:10],
            "features": list(self.feature_names),
            "feature_hash": self.manifest.feature_hash,
            "classes": list(self.classes),
            "timeframe": self.timeframe,
            "horizon": self.horizon,
            "training_window": self.manifest.training_window,
        }


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    d = Path(path)
    if not d.exists():
        raise ModelError(f"model {d}: no such directory")
    if not d.is_dir():
        raise ModelError(f"model {d}: not a directory")
    f = d / MANIFEST
    if not f.is_file():
        raise ModelError(f"model {d}: no {MANIFEST} (not a model directory, or training failed)")
    try:
        raw = json.loads(f.read_text(encoding="utf-8"))
        if raw.get("format") != FORMAT:
            raise ModelError(f"model {d}: manifest format {raw.get('format')!r}, expected {FORMAT}")
        known = set(Manifest.__dataclass_fields__)
        m = Manifest(**{k: v for k, v in raw.items() if k in known})
    except ModelError:
        raise
    except (ValueError, TypeError) as e:
        raise ModelError(f"model {d}: {MANIFEST} is corrupt ({e})") from None
    if m.kind not in MODEL_FILES:
        raise ModelError(f"model {d}: unknown kind {m.kind!r} (lightgbm or xgboost)")
    return m


def check_features(m: Manifest, where: str) -> None:
    """Refuse a model whose features this code does not compute the same way."""
    unknown = [n for n in m.features if n not in catalog.GROUP_OF]
    if unknown:
        raise ModelError(f"model {where}: features unknown to this mandi: {', '.join(unknown)}")
    code = feature_code_hash()
    if m.feature_hash != code:
        raise ModelError(
            f"model {where}: trained on feature code {m.feature_hash}, this mandi computes "
            f"features with {code}; retrain it (mandi train)"
        )


def load_model(path: str | os.PathLike[str]) -> Model:
    """Load a model directory (see the module docstring); :class:`ModelError` on any problem."""
    d = Path(path)
    m = read_manifest(d)
    check_features(m, str(d))
    f = d / MODEL_FILES[m.kind]
    if not f.is_file():
        raise ModelError(f"model {d}: {f.name} is missing")
    try:
        if m.kind == "lightgbm":
            import lightgbm as lgb

            booster: Any = lgb.Booster(model_file=str(f))
            n = booster.num_feature()
        else:
            import xgboost as xgb

            booster = xgb.Booster()
            booster.load_model(str(f))
            n = booster.num_features()
    except ImportError as e:
        raise ModelError(f"model {d}: needs {m.kind} (pip install 'mandi[ml]'): {e}") from None
    except Exception as e:  # the libraries raise their own error types on corrupt files
        raise ModelError(f"model {d}: {f.name} is corrupt ({type(e).__name__})") from None
    if n != len(m.features):
        raise ModelError(
            f"model {d}: {f.name} takes {n} features, the manifest lists {len(m.features)}"
        )
    return Model(d, m, booster)


def now_iso() -> str:
    """The wall-clock time as ISO 8601 UTC (the registry is shell code)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
