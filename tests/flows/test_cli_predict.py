"""``hilnas devices import``, ``hilnas predict`` and ``hilnas fit`` through the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from hilnas.pipeline import predictors as P
from hilnas.pipeline import refdata

from .conftest import invoke, user_error

pytestmark = pytest.mark.usefixtures("wide_console")


def write_device_csv(path, device="raspi4", extra=0, energy_device=None):
    """A CSV of a real device from the reference data: the 10 references (+ extra archs)."""
    ref = refdata.load_nb201()
    from hilnas.pipeline.spaces import get_space

    sp = get_space("nb201")
    idx = list(ref.reference_indices)
    others = [i for i in range(15625) if i not in set(idx)]
    idx += list(np.random.default_rng(0).choice(others, extra, replace=False))
    lat = ref.latency(device)
    en = ref.energy(energy_device) if energy_device else None
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["arch", "latency_ms"] + (["energy_mj"] if en is not None else []))
        for i in idx:
            w.writerow(
                [sp.format(ref.arch_codes[i]), f"{lat[i]:.6g}"]
                + ([f"{en[i]:.6g}"] if en is not None else [])
            )
    return path


def stored_external_names():
    from hilnas.pipeline.store import MeasurementStore

    with MeasurementStore() as st:
        return [e.name for e in st.external_devices()]


def test_new_user_imports_ten_references_and_predicts_the_whole_space(tmp_path):
    src = write_device_csv(tmp_path / "board.csv")
    res = invoke("devices", "import", "my_board", "--measurements", str(src))
    assert res.exit_code == 0, res.output
    assert "imported 10" in res.output
    out = tmp_path / "pred.csv"
    res = invoke("predict", "--device", "my_board", "--out", str(out))
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["arch", "latency_ms", "latency_ms_lo", "latency_ms_hi"]
    assert all(
        float(r["latency_ms_lo"]) <= float(r["latency_ms"]) <= float(r["latency_ms_hi"])
        for r in rows[:500]
    )
    assert len(rows) == 15625 and len({r["arch"] for r in rows}) == 15625
    lat = np.array([float(r["latency_ms"]) for r in rows])
    assert np.all(lat > 0) and np.all(np.isfinite(lat))
    assert P.spearman(lat, refdata.load_nb201().latency("raspi4")) > 0.9


def test_energy_column_when_the_device_has_energy(tmp_path):
    src = write_device_csv(tmp_path / "sim.csv", device="fpga", energy_device="fpga")
    assert invoke("devices", "import", "sim_fpga", "--csv", str(src)).exit_code == 0
    archs = tmp_path / "archs.txt"
    archs.write_text(
        "# two architectures\n0\n|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|\n"
    )
    res = invoke("predict", "--device", "sim_fpga", "--archs", str(archs))
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(res.stdout.splitlines()))
    assert [list(r) for r in rows] == [
        [
            "arch",
            "latency_ms",
            "energy_mj",
            "latency_ms_lo",
            "latency_ms_hi",
            "energy_mj_lo",
            "energy_mj_hi",
        ]
    ] * 2
    assert all(float(r["energy_mj"]) > 0 for r in rows)
    big = float(rows[1]["energy_mj"])
    assert big > float(rows[0]["energy_mj"])  # all-conv3x3 costs more than arch 0


def test_reference_device_prediction_needs_no_store(tmp_path, hilnas_home):
    res = invoke(
        "predict", "--device", "eyeriss", "--metric", "energy_mj", "--out", str(tmp_path / "e.csv")
    )
    assert res.exit_code == 0, res.output
    assert not (hilnas_home / "hilnas.db").exists()
    rows = list(csv.DictReader((tmp_path / "e.csv").open()))
    assert len(rows) == 15625
    assert list(rows[0]) == ["arch", "energy_mj", "energy_mj_lo", "energy_mj_hi"]


@pytest.mark.parametrize(
    "content, match",
    [
        ("arch,latency\n", "lacks the column(s) latency_ms"),
        ("arch,latency_ms\n|nor_conv_3x3~0|,1\n", "malformed"),
        (
            "arch,latency_ms\n|nor_conv_7x7~0|+|none~0|none~1|+|none~0|none~1|none~2|,1\n",
            "unknown operation",
        ),
        ("REFS\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,nan\n", "finite"),
        ("REFS\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,-1\n", "> 0"),
        ("REFS\nREF0,99\n", "different values"),
        (
            "arch,latency_ms\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,1\n",
            "reference architectures",
        ),
    ],
)
def test_bad_csv_is_rejected_and_nothing_stored(tmp_path, content, match):
    refs = P.reference_strings()
    body = "arch,latency_ms\n" + "".join(f"{a},{1 + i}\n" for i, a in enumerate(refs))
    content = content.replace("REFS\n", body).replace("REF0", refs[0])
    src = tmp_path / "bad.csv"
    src.write_text(content)
    msg = user_error(invoke("devices", "import", "bad_board", "--measurements", str(src)))
    assert match in msg
    assert stored_external_names() == []


def test_missing_references_message_names_each_one(tmp_path):
    # at least 6 of the 10 references join (the rest imputed); with 5 the error names the 5
    refs = P.reference_strings()
    src = tmp_path / "partial.csv"
    src.write_text("arch,latency_ms\n" + "".join(f"{a},2\n" for a in refs[:5]))
    msg = user_error(invoke("devices", "import", "partial", "--measurements", str(src)))
    assert all(r in msg for r in refs[5:]) and refs[0] not in msg
    assert stored_external_names() == []


@pytest.mark.parametrize(
    "args, match",
    [
        (["--device", "nosuch"], "no latency_ms embedding for 'nosuch'"),
        (["--device", "pixel2", "--metric", "energy_mj"], "no energy_mj embedding"),
        (["--device", "pixel2", "--metric", "power"], "--metric must be one of"),
        (["--device", "pixel2", "--archs", "missing.txt"], "does not exist"),
    ],
)
def test_predict_bad_input(args, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert match in user_error(invoke("predict", *args))


def test_predict_bad_arch_list_lists_lines(tmp_path):
    archs = tmp_path / "a.txt"
    archs.write_text("0\n|nor_conv_3x3~0|\n99999\n")
    msg = user_error(invoke("predict", "--device", "pixel2", "--archs", str(archs)))
    assert "line 2" in msg and "line 3" in msg


def test_energy_for_imported_latency_only_device_is_refused(tmp_path):
    src = write_device_csv(tmp_path / "b.csv")
    assert invoke("devices", "import", "lat_only", "--measurements", str(src)).exit_code == 0
    msg = user_error(invoke("predict", "--device", "lat_only", "--metric", "energy_mj"))
    assert "no energy_mj" in msg


def test_fit_refits_per_device_models_and_predict_uses_them(tmp_path):
    src = write_device_csv(tmp_path / "big.csv", device="gold_6226", extra=120)
    assert invoke("devices", "import", "big_cpu", "--measurements", str(src)).exit_code == 0
    small = write_device_csv(tmp_path / "small.csv", device="pixel2")
    assert invoke("devices", "import", "small_phone", "--measurements", str(small)).exit_code == 0
    res = invoke("fit", "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    rows = {r["target"]: r for r in report["devices"]}
    assert rows["big_cpu"]["status"] == "fitted" and rows["small_phone"]["status"] == "meta only"
    chosen = rows["big_cpu"]["cv"][rows["big_cpu"]["chosen"]]
    assert chosen["spearman"] > 0.9 and 0 <= chosen["within10"] <= 1
    out = tmp_path / "p.csv"
    assert invoke("predict", "--device", "big_cpu", "--out", str(out)).exit_code == 0
    meta_out = tmp_path / "m.csv"
    assert (
        invoke(
            "predict", "--device", "big_cpu", "--model", "meta", "--out", str(meta_out)
        ).exit_code
        == 0
    )
    a = np.array([float(r["latency_ms"]) for r in csv.DictReader(out.open())])
    b = np.array([float(r["latency_ms"]) for r in csv.DictReader(meta_out.open())])
    assert a.shape == b.shape == (15625,) and np.all(a > 0)
    assert P.spearman(a, refdata.load_nb201().latency("gold_6226")) > 0.95


@pytest.mark.slow
def test_fit_meta_refits_into_home(tmp_path, hilnas_home):
    src = write_device_csv(tmp_path / "big.csv", device="gold_6226", extra=60)
    assert invoke("devices", "import", "big_cpu", "--measurements", str(src)).exit_code == 0
    res = invoke("fit", "--meta", "--meta-devices", "modnas", "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    metas = {m["metric"]: m for m in report["meta_models"]}
    assert "big_cpu:latency_ms" in metas["latency_ms"]["targets"]
    assert (hilnas_home / "models" / "meta_predictor_latency_ms.safetensors").is_file()
    m = P.load_meta_predictor("latency_ms")
    assert m.device_weights.shape[0] == 14
