"""``hilnas predict --space S`` for the spaces beyond NB201: the space-generic cross-device
predictor trained on the shipped reference table (real measurements), through the CLI."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from hilnas.pipeline import predictors_space as PS
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
