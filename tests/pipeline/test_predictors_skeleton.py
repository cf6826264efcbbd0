"""Predictions on a really profiled CPU are positive and keep the skeleton's fixed cost.

The local CPU is profiled with real ONNX Runtime sessions (default skeleton: the predictors read
the default model configuration's measurements; 32 architectures, 3 repetitions: a few seconds).
"""

from __future__ import annotations

import numpy as np
from hilnas.pipeline import predictors as P
from hilnas.pipeline.export import OnnxExporter
from hilnas.pipeline.predictors import device as PD
from hilnas.pipeline.profiling import profile_device
from hilnas.pipeline.spaces import get_space
from hilnas.pipeline.store import MeasurementStore

ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"


def test_all_skip_prediction_is_bounded_below_by_the_skeleton(tmp_path):
    sp = get_space("nb201")
    store = MeasurementStore(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        profile_device(
            "cpu",
            store=store,
            exporter=OnnxExporter(cache_dir=tmp_path / "onnx"),
            # twice the minimum: under load up to half the non-reference rows can be flagged
            # and left out of the fit, and the fit must still have MIN_EXTRA of them
            archs=2 * PD.MIN_EXTRA + 2,
            reps=3,
            warmup=1,
            seed=3,
        )
        target = store.targets()[0]
        emb = P.embedding_for(target, "latency_ms", store)
        assert emb.network == "pruned"
        skip = np.asarray([sp.parse(ALL_SKIP)])
        measured = {tuple(c) for c in emb.support_codes.tolist()}
        assert tuple(skip[0]) not in measured  # a real prediction, not a lookup
        bound = P.FLOOR_SHARE * float(emb.measured.min())
        meta = P.load_meta_predictor("latency_ms", source="shipped").predict_codes(skip, emb)
        assert meta[0] >= bound > 0
        report = PD.fit_store_targets(store)
        [row] = report.fitted()
        dev = PD.load_device_predictor(emb)
        assert dev is not None and dev.kind == row["chosen"]
        pred = dev.predict_codes(skip)
        assert pred[0] >= emb.floor > 0
        # every architecture of the space is predicted positive, disconnected ones included
        space = dev.predict_codes(np.asarray(sp.reference_architectures()))
        assert np.all(space > 0)
    finally:
        store.close()
