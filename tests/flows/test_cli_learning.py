"""Issue 11 through the CLI: ``hilnas predict --interval``, partial imports, ``--strategy``.

Real CLI (the ``hilnas_cli`` fixture), real SQLite store in the test's HILNAS_HOME, real
shipped NB201 data and meta-predictor. Imported devices are real devices of the shipped table
(HW-NAS-Bench / HELP measurements) under a new name, so the predictions can be checked against
their true latencies.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from hilnas.pipeline import refdata
from hilnas.pipeline.spaces import get_space

pytestmark = pytest.mark.usefixtures("wide_console")

SP = get_space("nb201")
REF = refdata.load_nb201()
REF_IDX = list(REF.reference_indices)
REF_STRS = [SP.format(REF.arch_codes[i]) for i in REF_IDX]


def arch_file(path, n=500, seed=3):
    """``n`` non-reference NB201 indices, one per line."""
    held = np.setdiff1d(np.arange(len(REF.arch_codes)), REF_IDX)
    pick = np.random.default_rng(seed).choice(held, n, replace=False)
    path.write_text("".join(f"{i}\n" for i in pick))
    return path, pick


def device_csv(path, device="gold_6226", drop=(), extra=0, bad=None, seed=0):
    """A CSV of a shipped device's latencies: references (less ``drop``) plus ``extra``
    other architectures; ``bad``: {reference position: text} overrides."""
    idx = [i for k, i in enumerate(REF_IDX) if k not in drop]
    others = np.setdiff1d(np.arange(len(REF.arch_codes)), REF_IDX)
    idx += list(np.random.default_rng(seed).choice(others, extra, replace=False))
    lat = REF.latency(device)
    lines = ["arch,latency_ms"]
    for i in idx:
        value = f"{lat[i]:.6g}"
        if bad and i in REF_IDX and REF_IDX.index(i) in bad:
            value = bad[REF_IDX.index(i)]
        lines.append(f"{SP.format(REF.arch_codes[i])},{value}")
    path.write_text("\n".join(lines) + "\n")
    return path


def external(name):
    from hilnas.pipeline.store import MeasurementStore, StoreNotFoundError

    try:
        with MeasurementStore(read_only=True) as st:
            return st.external_measurements(name)
    except StoreNotFoundError:
        return []


def rows_of(text):
    return list(csv.DictReader(io.StringIO(text)))


def spearman(a, b):
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


# ----------------------------------------------------------------------------------------------
# predict --interval
# ----------------------------------------------------------------------------------------------
def test_predict_writes_intervals_that_contain_the_point_and_off_keeps_old_columns(
    hilnas_cli, tmp_path
):
    archs = tmp_path / "a.txt"
    pick = np.random.default_rng(1).choice(15625, 100, replace=False)
    archs.write_text("".join(f"{i}\n" for i in pick))
    code, out, err = hilnas_cli(["predict", "--device", "pixel2", "--archs", str(archs)])
    assert code == 0, err
    rows = rows_of(out)
    assert list(rows[0]) == ["arch", "latency_ms", "latency_ms_lo", "latency_ms_hi"]
    p, lo, hi = (np.array([float(r[c]) for r in rows]) for c in list(rows[0])[1:])
    assert np.all(lo <= p) and np.all(p <= hi) and np.all(lo > 0) and np.all(hi > lo)
    assert "80% intervals" in err
    code, plain, _ = hilnas_cli(
        ["predict", "--device", "pixel2", "--archs", str(archs), "--interval", "0"]
    )
    assert code == 0 and list(rows_of(plain)[0]) == ["arch", "latency_ms"]
    assert [r["latency_ms"] for r in rows_of(plain)] == [r["latency_ms"] for r in rows]


@pytest.mark.parametrize("value", ["0.3", "1", "-0.8", "nan"])
def test_bad_interval_level_is_refused(hilnas_cli, value):
    code, out, err = hilnas_cli(["predict", "--device", "pixel2", "--interval", value])
    assert code == 2 and "--interval" in err and out == ""


def test_intervals_cover_held_out_architectures_zero_shot_and_after_measurements(
    hilnas_cli, tmp_path
):
    """A real CPU of the shipped table (gold_6226) imported from its 10 references, and again
    with 40 further measurements: on 300 held-out architectures the 80 % intervals cover
    about 80 % of the true latencies (measured 0.81 and 0.83), and the second one was fit on
    its measurements (a residual model other than none)."""
    device = "gold_6226"
    src = device_csv(tmp_path / "d.csv", device=device, extra=40)
    assert hilnas_cli(["devices", "import", "cpu_x", "--csv", str(src)])[0] == 0
    zero = device_csv(tmp_path / "z.csv", device=device)
    assert hilnas_cli(["devices", "import", "cpu_z", "--csv", str(zero)])[0] == 0
    held = np.setdiff1d(np.arange(15625), REF_IDX)
    held = np.random.default_rng(7).choice(held, 300, replace=False)
    archs = tmp_path / "held.txt"
    archs.write_text("".join(f"{i}\n" for i in held))
    truth = REF.latency(device)[held]
    for name, fitted in (("cpu_x", True), ("cpu_z", False)):
        code, out, err = hilnas_cli(["predict", "--device", name, "--archs", str(archs)])
        assert code == 0, err
        rows = rows_of(out)
        lo = np.array([float(r["latency_ms_lo"]) for r in rows])
        hi = np.array([float(r["latency_ms_hi"]) for r in rows])
        cover = float(np.mean((truth >= lo) & (truth <= hi)))
        assert 0.7 <= cover <= 0.92, (name, cover)
        assert ("residual model none" not in err) == fitted, err
        assert f"{40 if fitted else 0} measurements beyond the references" in err


# ----------------------------------------------------------------------------------------------
# partial imports
# ----------------------------------------------------------------------------------------------
def test_import_with_two_references_missing_joins_and_predicts(hilnas_cli, tmp_path):
    src = device_csv(tmp_path / "p.csv", device="pixel3", drop=(2, 7), extra=5)
    code, out, err = hilnas_cli(["devices", "import", "phone_p", "--csv", str(src)])
    assert code == 0, err
    assert "2 of the 10 reference architectures missing" in out
    stored = external("phone_p")
    assert len(stored) == 13  # only the measured rows: 8 references + 5
    assert not {REF_STRS[2], REF_STRS[7]} & {r[0] for r in stored}
    archs, pick = arch_file(tmp_path / "a.txt")
    code, pout, perr = hilnas_cli(["predict", "--device", "phone_p", "--archs", str(archs)])
    assert code == 0, perr
    assert "2 reference(s) imputed" in perr
    rows = rows_of(pout)
    pred = np.array([float(r["latency_ms"]) for r in rows])
    assert len(pred) == 500 and np.all(pred > 0)
    assert spearman(pred, REF.latency("pixel3")[pick]) > 0.8
    # the imputed references widen the interval against the same device imported whole
    full = device_csv(tmp_path / "f.csv", device="pixel3", extra=5)
    assert hilnas_cli(["devices", "import", "phone_f", "--csv", str(full)])[0] == 0
    code, fout, _ = hilnas_cli(["predict", "--device", "phone_f", "--archs", str(archs)])
    frows = rows_of(fout)

    def width(rs):
        return np.median(
            [np.log(float(r["latency_ms_hi"]) / float(r["latency_ms_lo"])) for r in rs]
        )

    assert width(rows) > width(frows)


def test_import_below_the_minimum_names_what_to_measure_and_stores_nothing(hilnas_cli, tmp_path):
    src = device_csv(tmp_path / "p.csv", drop=(0, 1, 2, 3, 4))
    code, out, err = hilnas_cli(["devices", "import", "few", "--csv", str(src)])
    assert code == 2 and "5 of the 10" in err and "at least 6" in err
    assert REF_STRS[0] in err and REF_STRS[4] in err and REF_STRS[5] not in err
    assert external("few") == []


def test_non_positive_reference_value_is_named_and_nothing_stored(hilnas_cli, tmp_path):
    src = device_csv(tmp_path / "p.csv", drop=(9,), bad={3: "0", 5: "-2"})
    code, out, err = hilnas_cli(["devices", "import", "neg", "--csv", str(src)])
    assert code == 2
    assert f"reference architecture {REF_STRS[3]}" in err and "must be > 0" in err
    assert REF_STRS[5] in err
    assert external("neg") == []


# ----------------------------------------------------------------------------------------------
# profile --strategy (input checks; the plans themselves: tests/pipeline/test_profile_strategy.py)
# ----------------------------------------------------------------------------------------------
def test_unknown_strategy_is_refused_before_anything_is_stored(hilnas_cli, tmp_path):
    code, out, err = hilnas_cli(["profile", "--device", "cpu", "--strategy", "greedy"])
    assert code == 2 and "--strategy must be one of active, random" in err
    assert not (tmp_path / "hilnas.db").exists()


def test_budget_larger_than_the_space_is_refused(hilnas_cli):
    code, out, err = hilnas_cli(
        ["profile", "--device", "cpu", "--strategy", "active", "--archs", "20000"]
    )
    assert code == 2 and "--archs" in err and "15,615" in err


def test_profile_active_through_the_cli(hilnas_cli):
    tiny = ["--channels", "4", "--cells", "1", "--config-set", "input_size=8"]
    base = ["profile", "--device", "cpu", "--reps", "3", "--warmup", "1", *tiny, "--json"]
    code, out, err = hilnas_cli([*base, "--archs", "0"])
    assert code == 0, err
    code, out, err = hilnas_cli([*base, "--archs", "3"])
    assert code == 0, err
    report = json.loads(out)
    assert report["strategy"] == "active" and report["measured"] == 3
    assert report["skipped"] == 10
