"""``hilnas search`` then ``hilnas front`` as a new user runs them: a surrogate-mode search, a
device imported afterwards from its 10 reference latencies, its front (table, JSON, files)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("safetensors")


from hilnas.pipeline.fronts import FRONT_WIDENING

from .conftest import invoke, reference_csv, user_error

pytestmark = pytest.mark.usefixtures("wide_console")


@pytest.fixture(scope="module")
def search_home(tmp_path_factory):
    return tmp_path_factory.mktemp("cli-search-home")


@pytest.fixture(scope="module")
def _search_once(search_home):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HILNAS_HOME", str(search_home))
        return _run_search()


@pytest.fixture
def searched(_search_once, search_home, monkeypatch):
    """One tiny surrogate search for the whole module; each test runs in its home."""
    monkeypatch.setenv("HILNAS_HOME", str(search_home))
    return _search_once


def _run_search():
    res = invoke(
        "search",
        "--mode",
        "surrogate",
        "--objectives",
        "error,latency",
        "--devices",
        "1080ti_1,pixel3",
        "--devices",
        "gold_6240",
        "--epochs",
        "1",
        "--queries",
        "30",
        "--seed",
        "3",
        "--threads",
        "1",
        "--json",
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout[res.stdout.index("{") :])
    assert summary["train_targets"] == ["1080ti_1", "pixel3", "gold_6240"]
    assert summary["objectives"] == ["error", "latency_ms"] and summary["seed"] == 3
    return summary


def test_search_then_front_for_a_device_imported_afterwards(searched, tmp_path):
    src = reference_csv(tmp_path / "board.csv", scale=1.25)
    assert invoke("devices", "import", "my_board", "--measurements", str(src)).exit_code == 0
    out = tmp_path / "front"
    res = invoke("front", "--device", "my_board", "--points", "12", "--json", "--out", str(out))
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["device"] == "my_board" and doc["objectives"] == ["error", "latency_ms"]
    assert doc["points"] and doc["search"]["run_id"] == searched["run_id"]
    lat = [p["objectives"]["latency_ms"] for p in doc["points"]]
    assert lat == sorted(lat)
    # every point carries its 80 % latency interval (zero-shot: no measurements beyond the
    # references), containing the point; the file keeps it and says how it was obtained
    assert doc["intervals"]["latency_ms"] == {
        "level": 0.8, "model": "none", "measured": 0, "imputed": 0,
        "selection_widening": FRONT_WIDENING["nb201"],
    }  # fmt: skip
    for p in doc["points"]:
        lo, hi = p["intervals"]["latency_ms"]
        assert 0 < lo <= p["objectives"]["latency_ms"] <= hi and lo < hi
        assert p["interval_level"] == 0.8
    saved = json.loads((out / "front.json").read_text())
    assert saved["metadata"]["intervals"] == doc["intervals"]
    assert "latency_ms" in saved["metadata"]["costs"]  # where the front's latencies come from
    assert [p["intervals"] for p in saved["points"]] == [p["intervals"] for p in doc["points"]]
    assert (out / "front.json").is_file() and (out / "front.png").stat().st_size > 1000
    table = invoke("front", "--device", "my_board", "--points", "12")
    assert table.exit_code == 0 and "front on my_board" in table.output
    assert "80 % prediction intervals of the latency_ms predictor" in table.output
    assert f"widened x{FRONT_WIDENING['nb201']:g} in log" in table.output


def test_front_with_one_preference_and_onnx_export(searched, tmp_path):
    out = tmp_path / "one"
    res = invoke(
        "front",
        "--device",
        "pixel3",
        "--preference",
        "0.7,0.3",
        "--json",
        "--out",
        str(out),
        "--export-onnx",
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert len(doc["points"]) == 1 and doc["points"][0]["preference"] == [0.7, 0.3]
    onnx_files = list((out / "onnx").glob("*.onnx"))
    assert len(onnx_files) == 1 and onnx_files[0].stat().st_size > 0


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--preference", "0.3,0.3"], "sums to 0.6"),
        (["--preference", "0.5,0.25,0.25"], "3 components but there are 2 objectives"),
        (["--preference", "1.5,-0.5"], "negative"),
        (["--preference", "a,b"], "not a comma-separated list"),
        (["--points", "5", "--preference", "0.5,0.5"], "either --points or --preference"),
        (["--export-onnx"], "--out"),
        (["--search", "no-such-run"], "not a saved search"),
    ],
)
def test_bad_front_requests_are_explained(searched, args, fragment):
    assert fragment in user_error(invoke("front", "--device", "pixel3", *args))


def test_a_device_without_an_embedding_is_named(searched):
    msg = user_error(invoke("front", "--device", "unknown_board"))
    assert "unknown_board" in msg


def test_bad_search_requests_are_explained(hilnas_home):
    assert "unknown objective" in user_error(invoke("search", "--objectives", "error,flops"))
    assert "mode must be" in user_error(invoke("search", "--mode", "evolution"))
    assert "no search has been run" in user_error(invoke("front", "--device", "pixel3"))
    assert "--supernet-error must be one of" in user_error(
        invoke("search", "--mode", "supernet", "--supernet-error", "exact")
    )
    assert "--supernet-epochs=0 is out of range" in user_error(
        invoke("search", "--mode", "supernet", "--supernet-epochs", "0")
    )
