"""``hilnas predict --space S`` for the spaces beyond NB201: the space-generic cross-device
predictor trained on the shipped reference table (real measurements), through the CLI."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from hilnas.pipeline.predictors import space as PS
from hilnas.pipeline.spaces import get_space


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("predict-space-home")


def test_predict_ofa_subnets_for_a_reference_gpu(hilnas_cli, home, tmp_path):
    sp = get_space("ofa_mbv3")
    table = PS.shipped_table("ofa_mbv3")
    rows = [4100, 4321, 4555, 4789, 4999]  # HELP's query pool (idx >= 4000)
    archs = tmp_path / "archs.txt"
    archs.write_text("".join(sp.format(tuple(table.codes[r])) + "\n" for r in rows))
    code, out, err = hilnas_cli(
        ["predict", "--space", "ofa_mbv3", "--device", "titan_rtx_64", "--archs", str(archs)],
        env={"HILNAS_HOME": str(home)},
    )
    assert code == 0, err
    got = list(csv.DictReader(io.StringIO(out)))
    assert [r["arch"] for r in got] == archs.read_text().split()
    pred = np.array([float(r["latency_ms"]) for r in got])
    true = table.column("titan_rtx_64")[rows]
    assert np.all(np.abs(pred / true - 1) < 0.25), (pred, true)  # measured: 99.7 % within 10 %
    assert (home / "models" / "spaces" / "ofa_mbv3_latency_ms.json").is_file()  # cached


def test_predict_other_space_bad_input(hilnas_cli, home, tmp_path):
    env = {"HILNAS_HOME": str(home)}
    code, _, err = hilnas_cli(["predict", "--space", "ofa_mbv3", "--device", "titan_rtx_64"], env)
    assert code == 2 and "--archs" in err and len(err.strip().splitlines()) == 1
    nb = tmp_path / "nb201.txt"
    nb.write_text("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|\n")
    code, _, err = hilnas_cli(
        ["predict", "--space", "ofa_mbv3", "--device", "titan_rtx_64", "--archs", str(nb)], env
    )
    assert code == 2 and "NB201" in err and "Traceback" not in err
    ofa = tmp_path / "ofa.txt"
    ofa.write_text(get_space("ofa_mbv3").format(get_space("ofa_mbv3").sample(1, seed=3)[0]) + "\n")
    code, _, err = hilnas_cli(
        ["predict", "--space", "ofa_mbv3", "--device", "pixel9", "--archs", str(ofa)], env
    )
    assert code == 2 and "titan_rtx_64" in err  # the known devices are listed
    code, _, err = hilnas_cli(
        ["predict", "--space", "resnet", "--device", "x", "--archs", str(ofa)], env
    )
    assert code == 2 and "ofa_mbv3" in err


def _device_csv(path, sp, table, rows, scale):
    """A CSV of an imaginary OFA device: titan_rtx_64's real latencies times a factor that
    grows with the input resolution (a device whose memory system saturates on large inputs:
    what a cross-device predictor cannot know from 10 reference values alone)."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["arch", "latency_ms"])
        for r in rows:
            code = tuple(int(v) for v in table.codes[r])
            w.writerow([sp.format(code), f"{table.column('titan_rtx_64')[r] * scale(code):.6f}"])
    return path


def test_a_device_with_measurements_gets_a_per_device_model_and_intervals(
    hilnas_cli, home, tmp_path
):
    sp = get_space("ofa_mbv3")
    table = PS.shipped_table("ofa_mbv3")
    res = np.asarray(table.codes)[:, 0]

    def scale(code):  # the resolution option's index -> a factor between 1 and 4
        return 1.0 + 3.0 * (code[0] / res.max()) ** 2

    refs = list(table.reference_rows)
    train = [r for r in range(400) if r not in refs]
    test = list(range(4000, 4200))
    env = {"HILNAS_HOME": str(home)}
    archs = tmp_path / "test.txt"
    archs.write_text("".join(sp.format(tuple(table.codes[r])) + "\n" for r in test))
    true = np.array([table.column("titan_rtx_64")[r] * scale(tuple(table.codes[r])) for r in test])

    def predict(name):
        code, out, err = hilnas_cli(
            ["predict", "--space", "ofa_mbv3", "--device", name, "--archs", str(archs)], env
        )
        assert code == 0, err
        rows = list(csv.DictReader(io.StringIO(out)))
        pred = np.array([float(r["latency_ms"]) for r in rows])
        lo = np.array([float(r["latency_ms_lo"]) for r in rows])
        hi = np.array([float(r["latency_ms_hi"]) for r in rows])
        assert np.all((lo <= pred) & (pred <= hi) & (lo < hi))
        return pred, lo, hi, err

    for name, rows in (("zero_shot_board", refs), ("measured_board", refs + train)):
        src = _device_csv(tmp_path / f"{name}.csv", sp, table, rows, scale)
        code, _, err = hilnas_cli(
            ["devices", "import", name, "--space", "ofa_mbv3", "--csv", str(src)], env
        )
        assert code == 0, err
    zs, *_ = predict("zero_shot_board")
    pred, lo, hi, err = predict("measured_board")
    assert f"{len(train)} measurements beyond the references" in " ".join(err.split())
    zs_err = np.median(np.abs(np.log(zs / true)))
    own_err = np.median(np.abs(np.log(pred / true)))
    assert own_err < 0.7 * zs_err, (own_err, zs_err)  # its own measurements are used
    covered = np.mean((lo <= true) & (true <= hi))
    assert covered > 0.6, covered  # 80 % intervals, calibrated on its held-out measurements
