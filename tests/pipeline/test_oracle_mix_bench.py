"""The GPT-S search benchmark's in-measured-range HV ratios (issue 10), on the real surrogates."""

from __future__ import annotations

import numpy as np
from hilnas.pipeline.benchmarks import search_gpt
from hilnas.pipeline.predictors.space import gpt_measured_table
from hilnas.pipeline.spaces.gpt_s.surrogates import load_surrogates


def test_in_range_scores_only_points_inside_the_surrogates_measured_range():
    b = search_gpt.SearchBenchmark(
        devices=("a100",),
        seeds=(0,),
        objective_sets={"ppl-energy": ("perplexity", "energy_mj")},
        reference_evaluations=400,
        bounds_samples=500,
    )
    b.run_methods({"random@80": search_gpt.baseline_method("random", 80)})
    res = b.finish()
    cell = res["table"]["ppl-energy"]["a100"]
    ir = cell["in_range"]
    e = load_surrogates().energy_mj(gpt_measured_table("energy_mj").codes, "a100")
    lo, hi = ir["energy_range_mj"]
    assert abs(lo - np.nanmin(e)) < 1e-3 and abs(hi - np.nanmax(e)) < 1e-3
    assert 0 < ir["reference_points_in_range"]
    assert 0.0 < ir["random@80"]["mean"] <= 1.0 + 1e-9
    res["settings"] = {
        "quick": True,
        "finished": "-",
        "machine": "-",
        "load_before": {"loadavg": [0]},
        "load_after": {"loadavg": [0]},
        "total_wall_s": 0,
    }
    assert "ppl-energy in the measured energy range" in search_gpt.markdown(res)
