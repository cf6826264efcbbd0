"""``hilnas front --measure``: the front a search predicts for this machine's CPU, measured.

Real parts only: the local CPU from discovery, the real ONNX exporter and ONNX Runtime profiler
(warm-up 1, 3 repetitions), a real SQLite store in a temporary HILNAS_HOME, one tiny NB201
surrogate search whose targets include the CPU (profiled first on its 10 reference
architectures). The summary maths is checked on given numbers.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("safetensors")
pytest.importorskip("onnxruntime")

from hilnas.pipeline.front_check import NotMeasurableError, summarize  # noqa: E402

from .conftest import invoke, reference_csv, user_error  # noqa: E402

pytestmark = pytest.mark.usefixtures("wide_console")

TIMING = ("--reps", "3", "--warmup", "1")


@pytest.fixture(scope="module")
def measure_home(tmp_path_factory):
    return tmp_path_factory.mktemp("front-measure-home")


@pytest.fixture(scope="module")
def _profiled_and_searched(measure_home):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HILNAS_HOME", str(measure_home))
        from hilnas.devices import get_device

        prof = invoke("profile", "--device", "cpu", "--archs", "0", *TIMING, "--json")
        assert prof.exit_code == 0, prof.output
        key = json.loads(prof.stdout)["config_key"]
        assert key == f"{get_device('cpu').id}/cpu/t1/b1"
        res = invoke(
            "search",
            "--devices",
            "pixel3,cpu",
            "--epochs",
            "1",
            "--queries",
            "30",
            "--seed",
            "1",
            "--threads",
            "1",
            "--json",
        )
        assert res.exit_code == 0, res.output
        return key


@pytest.fixture
def cpu_key(_profiled_and_searched, measure_home, monkeypatch):
    """The CPU profiled and one tiny search for the whole module; each test runs in its home."""
    monkeypatch.setenv("HILNAS_HOME", str(measure_home))
    return _profiled_and_searched


def _count() -> int:
    from hilnas.pipeline.store import MeasurementStore

    with MeasurementStore(read_only=True) as st:
        return st.count_measurements()


def test_measure_the_cpu_front_stores_and_compares(cpu_key, tmp_path):
    from hilnas.pipeline.store import MeasurementStore

    before = _count()
    out = tmp_path / "front"
    res = invoke(
        "front", "--device", "cpu", "--points", "4", "--measure", *TIMING, "--json",
        "--out", str(out),
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    pts, check = doc["points"], doc["check"]
    assert 1 <= len(pts) <= 4
    # every point measured (> 0 ms), on the profiled configuration, at the asked settings
    assert check["config_key"] == cpu_key and check["reps"] == 3 and check["warmup"] == 1
    assert check["model_config_key"] == "C16-N5-in3x32-cls10"
    for p in pts:
        m = p["measured"]
        assert m["latency_ms"] > 0 and m["outcome"] in ("measured", "stored")
        assert m["predicted_ms"] == p["objectives"]["latency_ms"]
        lo, hi = p["intervals"]["latency_ms"]
        assert m["interval"] == [lo, hi] and m["in_interval"] == (lo <= m["latency_ms"] <= hi)
        assert m["flagged"] == (m["quality"] not in (None, "ok"))
    # the summary is consistent with the points
    assert check["n_points"] == check["n_measured"] == len(pts) and check["n_failed"] == 0
    assert check["measured_now"] + check["already_stored"] == len(pts)
    assert check["n_flagged"] == sum(p["measured"]["flagged"] for p in pts)
    assert check["n_with_interval"] == len(pts)
    assert check["in_interval"] == sum(p["measured"]["in_interval"] for p in pts)
    assert check["interval_coverage"] == round(check["in_interval"] / len(pts), 3)
    assert 0 <= check["within10"] <= check["within25"] <= 1
    again = summarize(
        [p["measured"]["predicted_ms"] for p in pts],
        [p["measured"]["latency_ms"] for p in pts],
        weights=[p["preference"][0] if p["preference"] else None for p in pts],
        intervals=[tuple(p["measured"]["interval"]) for p in pts],
        flagged=[p["measured"]["flagged"] for p in pts],
    )
    assert {k: check[k] for k in again} == again
    if len(pts) >= 3:
        assert -1 <= check["spearman_predicted_vs_measured"] <= 1
    # stored like any measurement: these rows, with their provenance and quality flag
    assert _count() == before + check["measured_now"]
    with MeasurementStore(read_only=True) as st:
        rows = {
            r.key.arch: r
            for r in st.measurements(config_key=cpu_key, space="nb201", status="ok")
            if r.key.repetitions == 3 and r.key.warmup == 1
        }
        assert set(rows) <= set(st.latency_table(cpu_key, "nb201", include_flagged=True))
    for p in pts:
        row = rows[p["arch"]]
        assert row.measurement.latency_ms_median == pytest.approx(p["measured"]["latency_ms"])
        assert row.host and row.quality == p["measured"]["quality"]
    # front.json keeps the measurements and the summary
    saved = json.loads((out / "front.json").read_text())
    assert [p["measured"] for p in saved["points"]] == [p["measured"] for p in pts]
    assert saved["metadata"]["check"] == check
    # the table form: predicted and measured per point, then the summary line
    table = invoke("front", "--device", "cpu", "--points", "4", "--measure", *TIMING)
    assert table.exit_code == 0, table.output
    assert f"measured on {cpu_key} (3 reps, 1 warm-up)" in table.output
    assert "predicted ms" in table.output and "Spearman(predicted, measured)" in table.output


def test_a_reference_or_imported_device_is_refused_before_anything_is_written(cpu_key, tmp_path):
    src = reference_csv(tmp_path / "board.csv")
    assert invoke("devices", "import", "board_m", "--measurements", str(src)).exit_code == 0
    before = _count()
    msg = user_error(invoke("front", "--device", "pixel3", "--measure", *TIMING))
    assert "'pixel3' is a reference device of the nb201 table" in msg
    assert "`hilnas profile --device cpu`" in msg
    res = invoke("front", "--device", "board_m", "--measure")
    assert isinstance(res.exception, NotMeasurableError), res.output
    assert "imported device" in str(res.exception) and "hilnas profile --device cpu" in str(
        res.exception
    )
    # bad timing and timing without --measure: refused too
    assert "--reps" in user_error(invoke("front", "--device", "cpu", "--measure", "--reps", "0"))
    assert "add --measure" in user_error(invoke("front", "--device", "cpu", "--reps", "3"))
    assert _count() == before


def test_summary_maths_on_given_numbers():
    s = summarize(
        [1.0, 2.0, 3.0, 4.0, 2.0],
        [1.05, 2.6, 2.9, 5.5, None],  # the last one failed: left out
        weights=[0.9, 0.6, None, 0.1, 0.5],  # the third came from refinement (no preference)
        intervals=[(0.9, 1.1), (1.5, 2.5), None, (3.0, 6.0), (1.0, 3.0)],
        flagged=[False, True, False, True, False],
    )
    # |pred/meas - 1| = 0.048, 0.231, 0.034, 0.273
    assert s["n_points"] == 5 and s["n_measured"] == 4 and s["n_flagged"] == 2
    assert s["within10"] == 0.5 and s["within25"] == 0.75 and s["median_rel_error"] == 0.139
    assert s["spearman_predicted_vs_measured"] == 1.0
    # more weight on quality -> slower network would be positive; here it is the reverse
    assert s["spearman_quality_weight_vs_measured"] == -1.0 and s["n_with_preference"] == 3
    assert s["n_with_interval"] == 3 and s["in_interval"] == 2
    assert s["interval_coverage"] == 0.667
    # too few points for a rank correlation, and a constant input: None, not a number
    few = summarize([1.0, 2.0], [1.0, 2.0])
    assert few["spearman_predicted_vs_measured"] is None and few["within10"] == 1.0
    flat = summarize([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    assert flat["spearman_predicted_vs_measured"] is None
    assert flat["interval_coverage"] is None and flat["n_with_interval"] == 0


def test_a_configuration_measured_on_another_machine_is_refused(tmp_path):
    """A store holding another host's CPU (its 10 references, e.g. copied from a server): its
    front can be read, but not measured here; nothing is written."""
    from hilnas.devices.base import DeviceInfo, DeviceKind
    from hilnas.pipeline.front_check import check_measurable, measure_front
    from hilnas.pipeline.spaces import get_space
    from hilnas.pipeline.store import MeasurementKey, MeasurementStore
    from hilnas.profilers.testing import fake_measurement

    sp = get_space("nb201")
    mck = sp.default_model_config().key()
    other = DeviceInfo(
        id="cpu-0therb0x", kind=DeviceKind.CPU, name="Another CPU", fingerprint="o" * 64,
        properties={"logical_cores": 8}, energy_counter=None,
        energy_unavailable_reason="not this machine", aliases=("cpu",),
    )  # fmt: skip
    url = f"sqlite:///{tmp_path / 'other.db'}"
    refs = [sp.format(a) for a in sp.reference_architectures()]
    with MeasurementStore(url) as st:
        st.upsert_device(other)
        for i, arch in enumerate(refs):
            k = MeasurementKey("nb201", arch, mck, 17, other.id, "CPUExecutionProvider", 1, 1, 1, 3)
            st.add_measurement(k, fake_measurement(1.0 + 0.2 * i))
        (key,) = st.config_keys()
        before = st.count_measurements()
    with pytest.raises(NotMeasurableError, match="measured on another machine"):
        check_measurable(key, space="nb201", store=url)
    point = {"arch": sp.format(sp.from_index(7)), "objectives": {"latency_ms": 1.0}}
    with pytest.raises(NotMeasurableError, match="hilnas profile --device cpu"):
        measure_front([point], space="nb201", device=key, store=url, reps=3, warmup=1)
    with MeasurementStore(url, read_only=True) as st:
        assert st.count_measurements() == before
