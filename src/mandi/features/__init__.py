"""Features for ML models — one code path for training and live (DESIGN §3.6, §11).

Kernel code: pure functions and small incremental states, no I/O.

* :mod:`~mandi.features.catalog` — every feature by name and group (bars, time, vix, chain).
* :func:`build_features` (batch, for training) and :class:`FeatureBuilder` (one bar at a time,
  for strategies) — equal results, tested feature by feature.
* :func:`forward_labels` — up / neutral / down labels over a horizon;
  :func:`walk_forward` — purged, embargoed walk-forward folds.
* :func:`build_dl_tensor` and :func:`build_compact_features` — seed 000's normalized
  ``(time, channel, strike)`` chain windows and compact chain features.

Training, the model registry and serving are shell code in :mod:`mandi.ml`.
"""

from mandi.features.builder import FeatureBuilder, FeatureFrame, build_features
from mandi.features.catalog import (
    ALL_FEATURES,
    BAR_FEATURES,
    CHAIN_FEATURES,
    GROUPS,
    TIME_FEATURES,
    VIX_FEATURES,
    features_of,
    groups_of,
)
from mandi.features.chain import build_compact_features
from mandi.features.labels import CLASS_LABELS, CLASSES, Labels, forward_labels
from mandi.features.tensors import DLTensor, build_dl_tensor
from mandi.features.walkforward import Fold, walk_forward

__all__ = [
    "ALL_FEATURES",
    "BAR_FEATURES",
    "CHAIN_FEATURES",
    "CLASSES",
    "CLASS_LABELS",
    "GROUPS",
    "TIME_FEATURES",
    "VIX_FEATURES",
    "DLTensor",
    "FeatureBuilder",
    "FeatureFrame",
    "Fold",
    "Labels",
    "build_compact_features",
    "build_dl_tensor",
    "build_features",
    "features_of",
    "forward_labels",
    "groups_of",
    "walk_forward",
]
