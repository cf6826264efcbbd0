"""``hilnas search --space gpt_s``, ``hilnas front --space gpt_s``, ``hilnas devices import
--space gpt_s`` and ``hilnas predict --space gpt_s`` for an imported device, end to end
through the CLI: a real store, the real shipped tables and surrogate, real ONNX Runtime
sessions for the exported front."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def predictor_cache(tmp_path_factory):
    """The gpt_s latency predictor trained once (tens of seconds) for the module's homes."""
    from hilnas.pipeline.predictors.space import default_predictor

    cache = tmp_path_factory.mktemp("models") / "spaces"
    cache.mkdir()
    default_predictor("gpt_s", "latency_ms", cache_dir=cache)
    return cache


@pytest.fixture(scope="module")
def searched(tmp_path_factory, predictor_cache, cli_main):
    """One small gpt_s search in a module-wide HILNAS_HOME; returns that home."""
    home = tmp_path_factory.mktemp("hilnas-home")
    shutil.copytree(predictor_cache, home / "models" / "spaces")

    class _Capture:
        def readouterr(self):
            return "", ""

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HILNAS_HOME", str(home))
        code, _, _ = cli_main(
            ["search", "--space", "gpt_s", "--steps", "30", "--queries", "40", "--json"],
            _Capture(),
        )
    assert code == 0
    return home


@pytest.fixture
def in_home(searched, monkeypatch):
    monkeypatch.setenv("HILNAS_HOME", str(searched))
    return searched


def test_search_saves_a_gpt_run(in_home):
    runs = [p for p in (in_home / "search").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(runs) >= 1
    settings = json.loads((runs[0] / "settings.json").read_text())
    assert settings["space"] == "gpt_s"
    assert settings["objectives"] == ["perplexity", "latency_ms"]
    assert len(settings["queried"]) == 40
    assert (in_home / "search" / "latest-gpt_s").is_file()


def test_front_writes_json_png_and_onnx_that_runs(in_home, hilnas_cli, tmp_path):
    import onnxruntime as ort

    out = tmp_path / "front"
    code, stdout, err = hilnas_cli(
        [
            "front",
            "--space",
            "gpt_s",
            "--device",
            "a100",
            "--points",
            "4",
            "--out",
            str(out),
            "--export-onnx",
        ]
    )
    assert code == 0, err
    doc = json.loads((out / "front.json").read_text())
    assert doc["objectives"] == ["perplexity", "latency_ms"]
    assert 2 <= len(doc["points"]) <= 4
    assert all(p["pareto"] for p in doc["points"])
    assert (out / "front.png").stat().st_size > 1000
    files = sorted((out / "onnx").glob("*.onnx"))
    assert len(files) == len(doc["points"])
    sess = ort.InferenceSession(str(files[0]), providers=["CPUExecutionProvider"])
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        feeds[i.name] = np.zeros(shape, dtype=np.int64 if "int64" in i.type else np.float32)
    outs = sess.run(None, feeds)
    assert np.all(np.isfinite(outs[0]))


def test_front_json_lists_the_trade_off(in_home, hilnas_cli):
    code, stdout, err = hilnas_cli(
        ["front", "--space", "gpt_s", "--device", "cpu_xeon_gold", "--points", "6", "--json"]
    )
    assert code == 0, err
    doc = json.loads(stdout)
    ppl = [p["objectives"]["perplexity"] for p in doc["points"]]
    lat = [p["objectives"]["latency_ms"] for p in doc["points"]]
    order = np.argsort(ppl)
    # non-dominated: as perplexity goes up, latency goes down
    assert np.all(np.diff(np.asarray(lat)[order]) <= 1e-9)
    # each point carries its 80 % hardware intervals (zero-shot for a reference device)
    hardware = [o for o in doc["objectives"] if o in ("latency_ms", "energy_mj")]
    assert sorted(doc["intervals"]) == sorted(hardware)
    assert all(n["level"] == 0.8 and n["measured"] == 0 for n in doc["intervals"].values())
    for p in doc["points"]:
        for o in hardware:
            lo, hi = p["intervals"][o]
            assert 0 < lo <= p["objectives"][o] <= hi


def _gpt_reference_csv(path, device="rtx3080", scale=1.7):
    from hilnas.pipeline.predictors.space import gpt_measured_table
    from hilnas.pipeline.spaces import get_space

    table = gpt_measured_table("latency_ms")
    refs = get_space("gpt_s").reference_strings()
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["arch", "latency_ms"])
        for arch, v in zip(refs, table.reference_values(device), strict=True):
            w.writerow([arch, f"{v * scale:.6g}"])
    return path


def test_an_imported_device_gets_a_front_and_predictions_zero_shot(in_home, hilnas_cli, tmp_path):
    path = _gpt_reference_csv(tmp_path / "laptop.csv")
    code, stdout, err = hilnas_cli(
        ["devices", "import", "my-laptop", "--space", "gpt_s", "--csv", str(path)]
    )
    assert code == 0, err
    assert "gpt_s" in stdout
    code, stdout, err = hilnas_cli(
        ["front", "--space", "gpt_s", "--device", "my-laptop", "--points", "3", "--json"]
    )
    assert code == 0, err
    doc = json.loads(stdout)
    assert len(doc["points"]) >= 2
    assert doc["intervals"]["latency_ms"]["measured"] == 0  # imported with its references only
    assert all(p["intervals"]["latency_ms"][0] > 0 for p in doc["points"])
    archs = tmp_path / "archs.txt"
    from hilnas.pipeline.spaces import get_space

    sp = get_space("gpt_s")
    archs.write_text("\n".join(sp.format(a) for a in sp.sample(3, seed=1)) + "\n")
    code, stdout, err = hilnas_cli(
        [
            "predict",
            "--space",
            "gpt_s",
            "--device",
            "my-laptop",
            "--archs",
            str(archs),
            "--metric",
            "latency_ms",
        ]
    )
    assert code == 0, err
    rows = list(csv.DictReader(stdout.splitlines()))
    assert len(rows) == 3 and all(float(r["latency_ms"]) > 0 for r in rows)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["front", "--space", "ofa_mbv3", "--device", "titan_rtx_64"], "no ofa_mbv3 search"),
        (["front", "--space", "gpt_s", "--device", "no-such-device"], "not a gpt_s reference"),
        (
            ["front", "--space", "gpt_s", "--device", "a100", "--preference", "0.5,0.2,0.3"],
            "preference",
        ),
        (["search", "--space", "gpt_s", "--objectives", "error,latency"], "unknown objective"),
        (["search", "--space", "gpt_s", "--mode", "supernet"], "NB201 search"),
        (["search", "--space", "ofa_mbv3", "--quality", "surrogate"], "quality mode"),
        (["search", "--space", "ofa_mbv3", "--objectives", "error,energy_mj"], "energy_mj"),
        (["search", "--quality", "surrogate"], "spaces other than nb201"),
    ],
)
def test_bad_input_is_one_line_naming_the_fix(in_home, hilnas_cli, args, needle):
    before = sorted(p.name for p in (in_home / "search").iterdir())
    code, stdout, err = hilnas_cli(args)
    assert code == 2, (stdout, err)
    assert needle in err
    assert sorted(p.name for p in (in_home / "search").iterdir()) == before


def test_a_gpt_search_is_not_read_as_another_space(in_home, hilnas_cli):
    code, _, err = hilnas_cli(
        ["front", "--space", "ofa_mbv3", "--device", "titan_rtx_64", "--search", "latest"]
    )
    assert code == 2
    assert "is a gpt_s search, not ofa_mbv3" in err


def test_wrong_space_csv_names_the_right_space(in_home, hilnas_cli, tmp_path):
    from .conftest import reference_csv

    path = reference_csv(tmp_path / "nb201.csv")
    code, _, err = hilnas_cli(
        ["devices", "import", "board", "--space", "gpt_s", "--csv", str(path)]
    )
    assert code == 2
    assert "pass --space nb201" in err
    from hilnas.pipeline.store import MeasurementStore

    with MeasurementStore() as store:
        assert [d.name for d in store.external_devices()] in ([], ["my-laptop"])
