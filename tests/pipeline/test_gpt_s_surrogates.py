"""GPT-S surrogate oracles and measurement table, checked against HW-GPT-Bench's data.

The full checks read ``../shared/data/gpt_s`` (skipped when it is not beside the checkout); a
few hard-coded rows of its ``sample.csv`` keep a check on a fresh clone.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from hilnas.devices.errors import NotFoundError
from hilnas.pipeline.spaces.base import ArchitectureError
from hilnas.pipeline.spaces.gpt_s import (
    DEVICES,
    MJ_PER_WH,
    GPTSpace,
    load_measured,
    load_surrogates,
)
from hilnas.pipeline.spaces.gpt_s.derive import derive
from hilnas.pipeline.spaces.gpt_s.surrogates import (
    DATA_DIR,
    codes_array,
    hw_scalar_27,
    ppl_onehot_80,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "gpt_s"

#: Row 0 of sample.csv (values as printed there, float64 of the float32 MLPs).
ROW0 = {
    "arch": '{"embed":384,"layers":11,"mlp_ratio":[4,3,2,2,4,3,4,4,4,2,2],'
    '"heads":[8,12,12,4,8,4,4,12,12,8,8],"bias":true}',
    "params": 57722880,
    "perplexity": 31.86642022990699,
    "latency_ms_a100": 15.71872047777271,
    "latency_ms_cpu_amd_7452": 4677.748989878701,
    "energy_wh_P100": 0.008872866036754232,
    "energy_wh_cpu_xeon_gold": 0.023281222903200297,
}


def _rows(name: str) -> list[dict[str, str]]:
    if not (SHARED / name).exists():
        pytest.skip("../shared/data/gpt_s is not beside this checkout")
    with (SHARED / name).open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def space() -> GPTSpace:
    return GPTSpace()


def test_hard_coded_sample_row(space):
    s = load_surrogates()
    code = [space.parse(ROW0["arch"])]
    assert space.params_hwgpt(code[0]) == ROW0["params"]
    np.testing.assert_allclose(s.perplexity(code), [ROW0["perplexity"]], rtol=1e-12)
    np.testing.assert_allclose(s.latency_ms(code, "a100"), [ROW0["latency_ms_a100"]], rtol=1e-12)
    np.testing.assert_allclose(
        s.latency_ms(code, "cpu_amd_7452"), [ROW0["latency_ms_cpu_amd_7452"]], rtol=1e-12
    )
    np.testing.assert_allclose(
        s.energy_mj(code, "P100"), [ROW0["energy_wh_P100"] * MJ_PER_WH], rtol=1e-12
    )
    np.testing.assert_allclose(
        s.raw("energy_cpu_xeon_gold", code), [ROW0["energy_wh_cpu_xeon_gold"]], rtol=1e-12
    )


def test_every_sample_row_is_reproduced(space):
    """All 3,000 rows x 21 outputs. Tolerance: 1e-9 relative per value (float64 evaluation of
    the float32 weights, as the source computed them; observed: bit-identical)."""
    rows = _rows("sample.csv")
    assert len(rows) == 3000
    codes = np.array([space.parse(r["arch"]) for r in rows])
    assert [space.format(c) for c in codes] == [r["arch"] for r in rows]
    assert [space.params_hwgpt(c) for c in codes] == [int(r["params"]) for r in rows]
    s = load_surrogates()
    pred = s.predict(codes)

    def col(name: str) -> np.ndarray:
        return np.array([float(r[name]) for r in rows])

    np.testing.assert_allclose(pred.perplexity, col("perplexity"), rtol=1e-9)
    for j, d in enumerate(DEVICES):
        np.testing.assert_allclose(pred.latency_ms[:, j], col(f"latency_ms_{d}"), rtol=1e-9)
        wh = col(f"energy_wh_{d}")
        np.testing.assert_allclose(s.raw(f"energy_{d}", codes), wh, rtol=1e-9, atol=1e-15)
        valid = wh > 0
        np.testing.assert_array_equal(pred.energy_valid[:, j], valid)
        np.testing.assert_allclose(pred.energy_mj[valid, j], wh[valid] * MJ_PER_WH, rtol=1e-9)
        assert np.isnan(pred.energy_mj[~valid, j]).all()
    # the source README's count: 73 P100 and 3 rtx2080 predictions are <= 0
    assert (~pred.energy_valid).sum(axis=0).tolist() == [0, 3, 0, 0, 0, 73, 0, 0, 0, 0]


def test_invalid_energies_are_nan_never_numbers(space):
    s = load_surrogates()
    codes = np.array(space.sample(400, seed=2))
    raw = s.raw("energy_P100", codes)
    mj = s.energy_mj(codes, "P100")
    assert (raw <= 0).any(), "expected some non-positive P100 predictions among small models"
    assert np.isnan(mj[raw <= 0]).all()
    assert (mj[raw > 0] > 0).all()


def test_encodings_match_the_space(space):
    codes = np.array(space.sample(64, seed=9))
    flat = np.stack([space.one_hot(c)[space.option_mask] for c in codes])
    np.testing.assert_array_equal(ppl_onehot_80(codes), flat)
    x = hw_scalar_27(codes)
    assert (x[:, 26] == 1.0).all()  # the bias input is always 1.0
    assert x.min() >= 0 and x.max() <= 1
    arch = space.decode(codes[0])
    assert x[0, 0] == (arch.embed - 192) / 576
    assert (x[0, 2 + arch.layers : 14] == 0).all()


def test_bad_codes_and_devices():
    s = load_surrogates()
    space = GPTSpace()
    bad = np.array(space.sample(2, seed=0))
    bad[1, 5] = 3
    with pytest.raises(ArchitectureError, match="options 0..2"):
        s.perplexity(bad)
    with pytest.raises(ArchitectureError, match="expected architecture codes of 27"):
        codes_array(np.zeros((2, 26), dtype=int))
    with pytest.raises(NotFoundError, match="known: a100"):
        s.latency_ms(bad[:1], "h100")
    with pytest.raises(NotFoundError):
        s.raw("accuracy", bad[:1])


def test_measured_table_matches_csv(space):
    m = load_measured()
    assert m.arch_codes.shape == (10000, 27) and m.devices == DEVICES
    assert int(m.surrogate_train.sum()) == 8000 and m.surrogate_train[:8000].all()
    assert not m.energy_mj.flags.writeable
    rows = _rows("measured.csv")
    assert [space.format(c) for c in m.arch_codes] == [r["arch"] for r in rows]
    ppl = np.array([float(r["perplexity"]) for r in rows])
    np.testing.assert_allclose(m.perplexity, ppl, rtol=1e-6)
    for d in DEVICES:
        lat = np.array([float(r[f"latency_ms_{d}"]) for r in rows])
        np.testing.assert_allclose(m.latency(d), lat, rtol=1e-6)
        wh = np.array([float(r[f"energy_wh_{d}"]) for r in rows])
        np.testing.assert_allclose(m.energy(d), np.where(wh > 0, wh * MJ_PER_WH, np.nan), rtol=1e-6)
    with pytest.raises(NotFoundError):
        m.latency("cpu")


def test_surrogates_generalise_as_documented():
    """On the 2,000 rows they were not fitted on, the latency MLPs stay within the source's
    documented MAPE (<= 10.1%) and the a100 latency Spearman is ~0.997."""
    from scipy.stats import spearmanr

    m = load_measured()
    s = load_surrogates()
    test = ~m.surrogate_train
    pred = s.predict(m.arch_codes[test])
    mape = np.abs(pred.latency_ms / m.latency_ms[test] - 1).mean(axis=0)
    assert mape.max() < 0.105
    assert spearmanr(pred.latency_ms[:, 0], m.latency_ms[test, 0]).statistic > 0.99


def test_derive_rebuilds_the_shipped_files(tmp_path):
    if not SHARED.exists():
        pytest.skip("../shared/data/gpt_s is not beside this checkout")
    derive(SHARED, tmp_path)
    for name in ("surrogates.npz", "measured.npz"):
        with np.load(tmp_path / name) as new, np.load(DATA_DIR / name) as old:
            assert sorted(new.files) == sorted(old.files)
            for k in old.files:
                np.testing.assert_array_equal(new[k], old[k])
    assert (tmp_path / "LICENSE.HW-GPT-Bench.txt").read_bytes() == (
        DATA_DIR / "LICENSE.HW-GPT-Bench.txt"
    ).read_bytes()
    meta = json.loads((SHARED / "surrogates.json").read_text())
    assert len(meta["models"]) == 21


def test_inactive_decisions_do_not_change_predictions(space):
    s = load_surrogates()
    codes = np.array(space.sample(20, seed=4))
    noisy = codes.copy()
    for row in noisy:
        row[~space.active_mask(row)] = 2
    a, b = s.predict(codes), s.predict(noisy)
    np.testing.assert_array_equal(a.perplexity, b.perplexity)
    np.testing.assert_array_equal(a.latency_ms, b.latency_ms)
    np.testing.assert_array_equal(codes_array(noisy), codes)
