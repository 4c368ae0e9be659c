"""Tree ensembles compiled to flat arrays and walked by one numba loop: the per-decision
prediction of a loaded LightGBM or XGBoost model without the library's per-call overhead
(``benchmarks/bench_ml.py`` measures both).

Both libraries' decision rules are reproduced exactly:

* **LightGBM** (numerical splits): |x| ≤ 1e-35 is 0 (the library drops such values when it
  reads a row), and a NaN becomes 0 unless the node's missing type is NaN; a
  missing value (NaN for type NaN, |x| ≤ 1e-35 for type Zero) goes to the default child;
  otherwise ``x <= threshold`` goes left. Thresholds and sums are float64.
* **XGBoost**: NaN goes to the default child; otherwise ``float32(x) < threshold`` goes left
  (XGBoost compares in float32). The per-class intercept is read off the library itself.

:func:`compile_model` refuses what it does not reproduce (categorical splits, linear trees,
random-forest averaging); :class:`~mandi.ml.registry.Model` also checks the compiled forest
against the library on probe rows when it loads a model, and falls back to the library if they
ever differ.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numba as nb
import numpy as np
from numpy.typing import NDArray

_MISSING = {"None": 0, "Zero": 1, "NaN": 2}
_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold, a float32 constant


class ForestError(ValueError):
    """The model uses something the compiled forest does not reproduce."""


@dataclass(frozen=True, slots=True)
class Forest:
    """A compiled ensemble: nodes in flat arrays (``left < 0`` marks a leaf), one root and one
    class per tree, the per-class intercept, and whether XGBoost's rules apply."""

    feature: NDArray[np.int32]
    threshold: NDArray[np.float64]
    left: NDArray[np.int32]
    right: NDArray[np.int32]
    default_left: NDArray[np.uint8]
    missing: NDArray[np.uint8]
    value: NDArray[np.float64]
    roots: NDArray[np.int32]
    tree_class: NDArray[np.int32]
    intercept: NDArray[np.float64]
    xgboost: bool
    n_features: int

    @property
    def n_classes(self) -> int:
        return len(self.intercept)

    def margins(self, row: NDArray[np.float64]) -> NDArray[np.float64]:
        out = self.intercept.copy()
        _walk(
            row,
            self.feature,
            self.threshold,
            self.left,
            self.right,
            self.default_left,
            self.missing,
            self.value,
            self.roots,
            self.tree_class,
            self.xgboost,
            out,
        )
        return out

    def predict_proba(self, row: NDArray[np.float64]) -> NDArray[np.float64]:
        """Class probabilities (softmax of the margins) of one feature row."""
        out = self.intercept.copy()
        _walk(
            row,
            self.feature,
            self.threshold,
            self.left,
            self.right,
            self.default_left,
            self.missing,
            self.value,
            self.roots,
            self.tree_class,
            self.xgboost,
            out,
        )
        _softmax(out)
        return out


@nb.njit(cache=True, nogil=True)
def _walk(x, feat, thr, left, right, dleft, miss, value, roots, tree_class, xgb, out):  # type: ignore[no-untyped-def]
    for t in range(roots.shape[0]):
        n = roots[t]
        while left[n] >= 0:
            v = x[feat[n]]
            if xgb:
                if math.isnan(v):
                    n = left[n] if dleft[n] else right[n]
                elif np.float32(v) < thr[n]:
                    n = left[n]
                else:
                    n = right[n]
            else:
                m = miss[n]
                if (math.isnan(v) and m != 2) or -_ZERO <= v <= _ZERO:
                    v = 0.0  # LightGBM reads |x| <= 1e-35 as an absent (zero) value
                if (m == 2 and math.isnan(v)) or (m == 1 and -_ZERO <= v <= _ZERO):
                    n = left[n] if dleft[n] else right[n]
                elif v <= thr[n]:
                    n = left[n]
                else:
                    n = right[n]
        out[tree_class[t]] += value[n]


@nb.njit(cache=True, nogil=True)
def _softmax(z):  # type: ignore[no-untyped-def]
    m = z.max()
    s = 0.0
    for i in range(z.shape[0]):
        z[i] = math.exp(z[i] - m)
        s += z[i]
    for i in range(z.shape[0]):
        z[i] /= s


class _Nodes:
    def __init__(self) -> None:
        self.feature: list[int] = []
        self.threshold: list[float] = []
        self.left: list[int] = []
        self.right: list[int] = []
        self.default_left: list[int] = []
        self.missing: list[int] = []
        self.value: list[float] = []

    def add(self) -> int:
        """A new node (a leaf of value 0 until set); its index."""
        self.feature.append(0)
        self.threshold.append(0.0)
        self.left.append(-1)
        self.right.append(-1)
        self.default_left.append(0)
        self.missing.append(0)
        self.value.append(0.0)
        return len(self.feature) - 1


def _lightgbm_tree(nodes: _Nodes, node: dict[str, Any]) -> int:
    i = nodes.add()
    if "leaf_value" in node:
        if node.get("leaf_coeff"):
            raise ForestError("linear trees are not compiled")
        nodes.value[i] = float(node["leaf_value"])
        return i
    if node.get("decision_type") != "<=":
        raise ForestError(f"split type {node.get('decision_type')!r} (categorical?)")
    nodes.feature[i] = int(node["split_feature"])
    nodes.threshold[i] = float(node["threshold"])
    nodes.default_left[i] = int(bool(node["default_left"]))
    nodes.missing[i] = _MISSING[node["missing_type"]]
    nodes.left[i] = _lightgbm_tree(nodes, node["left_child"])
    nodes.right[i] = _lightgbm_tree(nodes, node["right_child"])
    return i


def compile_lightgbm(booster: Any) -> Forest:
    """Compile a ``lightgbm.Booster`` (multiclass, numerical splits)."""
    d = booster.dump_model()
    k = int(d.get("num_tree_per_iteration", 1))
    if d.get("average_output"):
        raise ForestError("random-forest mode (average_output) is not compiled")
    nodes = _Nodes()
    roots, classes = [], []
    for t, info in enumerate(d["tree_info"]):
        if info.get("num_cat", 0):
            raise ForestError("categorical splits are not compiled")
        roots.append(_lightgbm_tree(nodes, info["tree_structure"]))
        classes.append(t % k)
    return _forest(nodes, roots, classes, np.zeros(k), False, int(d["max_feature_idx"]) + 1)


def compile_xgboost(booster: Any) -> Forest:
    """Compile an ``xgboost.Booster`` (``multi:softprob``, numerical splits); the intercept is
    calibrated against the booster's own margin on one row."""
    raw = json.loads(bytes(booster.save_raw("json")).decode())
    learner = raw["learner"]
    model = learner["gradient_booster"]["model"]
    n_features = int(learner["learner_model_param"]["num_feature"])
    k = max(1, int(learner["learner_model_param"].get("num_class", "1")))
    nodes = _Nodes()
    roots = []
    for tree in model["trees"]:
        if any(tree.get("split_type", [])) or tree.get("categories"):
            raise ForestError("categorical splits are not compiled")
        if int(tree["tree_param"].get("size_leaf_vector", "1")) > 1:
            raise ForestError("multi-target trees are not compiled")
        left, right = tree["left_children"], tree["right_children"]
        base = len(nodes.feature)
        for j in range(len(left)):
            i = nodes.add()
            if left[j] < 0:
                nodes.value[i] = float(tree["split_conditions"][j])
            else:
                nodes.feature[i] = int(tree["split_indices"][j])
                nodes.threshold[i] = float(np.float32(tree["split_conditions"][j]))
                nodes.left[i] = base + int(left[j])
                nodes.right[i] = base + int(right[j])
                nodes.default_left[i] = int(bool(tree["default_left"][j]))
        roots.append(base)
    forest = _forest(nodes, roots, list(model["tree_info"]), np.zeros(k), True, n_features)
    probe = np.zeros((1, n_features))
    lib = np.asarray(booster.inplace_predict(probe, predict_type="margin"), dtype=np.float64)
    intercept = lib.reshape(-1)[:k] - forest.margins(probe[0])
    return _forest(nodes, roots, list(model["tree_info"]), intercept, True, n_features)


def _forest(
    nodes: _Nodes,
    roots: list[int],
    classes: list[int],
    intercept: NDArray[np.float64],
    xgboost: bool,
    n_features: int,
) -> Forest:
    return Forest(
        np.asarray(nodes.feature, dtype=np.int32),
        np.asarray(nodes.threshold, dtype=np.float64),
        np.asarray(nodes.left, dtype=np.int32),
        np.asarray(nodes.right, dtype=np.int32),
        np.asarray(nodes.default_left, dtype=np.uint8),
        np.asarray(nodes.missing, dtype=np.uint8),
        np.asarray(nodes.value, dtype=np.float64),
        np.asarray(roots, dtype=np.int32),
        np.asarray(classes, dtype=np.int32),
        np.asarray(intercept, dtype=np.float64),
        xgboost,
        n_features,
    )
