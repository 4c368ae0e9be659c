"""Training, the model registry and serving (I/O shell; DESIGN §11).

* :mod:`mandi.ml.data` — bars, VIX and chains into feature frames; Parquet in and out.
* :mod:`mandi.ml.train` — walk-forward LightGBM / XGBoost with baselines, the report.
* :mod:`mandi.ml.registry` — model directories: save, load, the feature-code check.
* :mod:`mandi.ml.forest` — the compiled per-row predictor of loaded models.
* :mod:`mandi.ml.server` — ``mandi serve-model``: ``POST /predict``, ``GET /health``.

The features themselves are kernel code in :mod:`mandi.features`.
"""
