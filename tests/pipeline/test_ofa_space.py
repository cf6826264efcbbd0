"""The OFA MobileNetV3 space against HELP's 5,000 subnets (../shared/data/ofa): strings,
per-slot columns, reference architectures, geometry, MACs and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from hilnas.devices.errors import InvalidInputError
from hilnas.pipeline.spaces import ArchitectureError, OFAConfig, get_space
from hilnas.pipeline.spaces.ofa_mbv3.reference import HELP_REFERENCE_ARCHS, HELP_REFERENCE_INDICES
from hilnas.pipeline.spaces.ofa_mbv3.space import RESOLUTIONS, stage_widths

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "ofa"
NB201_EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


@pytest.fixture(scope="module")
def space():
    return get_space("ofa_mbv3")


@pytest.fixture(scope="module")
def rows():
    if not SHARED.exists():
        pytest.skip("../shared/data/ofa is not beside this checkout")
    with (SHARED / "archs.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_all_5000_strings_round_trip_and_agree_with_the_slot_columns(space, rows):
    assert len(rows) == 5000
    codes = set()
    for row in rows:
        code = space.parse(row["arch"])
        assert space.format(code) == row["arch"]
        codes.add(code)
        d = space.decode(code)
        assert d.resolution == int(row["resolution"])
        assert d.depths == tuple(int(row[f"d{s}"]) for s in range(1, 6))
        for s in range(5):
            for layer in range(4):
                k, e = row[f"ks_{s + 1}_{layer + 1}"], row[f"e_{s + 1}_{layer + 1}"]
                if layer < d.depths[s]:
                    assert (int(k), int(e)) == (d.kernels[s][layer], d.expands[s][layer])
                else:
                    assert k == e == ""
    assert len(codes) == 5000  # distinct networks, distinct canonical codes


def test_reference_architectures_are_helps(space):
    assert [space.format(a) for a in space.reference_architectures()] == list(HELP_REFERENCE_ARCHS)
    if not SHARED.exists():
        pytest.skip("../shared/data/ofa is not beside this checkout")
    ref = json.loads((SHARED / "reference_archs.json").read_text())
    assert list(HELP_REFERENCE_INDICES) == ref["indices"]
    assert list(HELP_REFERENCE_ARCHS) == [r["arch"] for r in ref["archs"]]


def test_macs_match_the_data_folder_and_rank_like_titan_rtx_64(space, rows):
    from scipy.stats import spearmanr

    sub = rows[::4]
    macs = np.array([space.flops(space.parse(r["arch"])) for r in sub])
    with (SHARED / "latency_ms.csv").open(newline="") as fh:
        latency = {r["idx"]: float(r["titan_rtx_64"]) for r in csv.DictReader(fh)}
    rho = spearmanr(macs, [latency[r["idx"]] for r in sub])[0]
    assert rho > 0.99
    all_macs = [space.flops(space.parse(r["arch"])) for r in rows]
    # README: "MACs range 92-636 M (median 272 M)"
    assert round(min(all_macs)) == 92 and round(max(all_macs)) == 636
    assert round(float(np.median(all_macs))) == 272


def test_geometry_at_width_1_2_and_other_widths(space):
    assert stage_widths(OFAConfig()) == (24, 24, 32, 48, 96, 136, 192, 1152, 1536)
    assert space.default_model_config() == OFAConfig(width_mult=1.2)
    assert space.default_model_config().key() == "w1.2-in3-cls1000"
    assert stage_widths(OFAConfig(width_mult=1.0)) == (16, 16, 24, 40, 80, 112, 160, 960, 1280)
    a = space.parse(HELP_REFERENCE_ARCHS[2])
    plan = space.plan(a)
    strides = [b.stride for b in plan.blocks if b.path.endswith(".0")]
    assert strides == [2, 2, 2, 1, 2]
    se_stages = sorted({int(b.path.split(".")[1]) + 1 for b in plan.blocks if b.squeeze})
    assert se_stages == [2, 4, 5]
    assert [b.act for b in plan.blocks if b.path.endswith(".0")] == [
        "relu", "relu", "hswish", "hswish", "hswish",
    ]  # fmt: skip
    first = plan.blocks[0]
    assert (first.c_in, first.c_out, first.expand, first.residual) == (24, 24, False, True)
    small = space.make_config(width_mult=0.5, num_classes=10)
    assert small.key() == "w0.5-in3-cls10"
    assert space.flops(a, small) < space.flops(a) / 2
    with pytest.raises(InvalidInputError, match="width_mult"):
        OFAConfig(width_mult=0)


def test_size_and_resolutions(space):
    assert RESOLUTIONS == tuple(range(128, 225, 4)) and len(RESOLUTIONS) == 25
    assert space.size() == 25 * (9**2 + 9**3 + 9**4) ** 5
    assert space.num_decisions == 46 and space.encoding_shape == (46, 25)


def test_workload_follows_the_resolution(space):
    a = space.parse(HELP_REFERENCE_ARCHS[4])  # r136
    work = space.workload(a, batch_size=8)
    assert [(s.name, s.shape, s.dtype) for s in work.inputs] == [
        ("input", (8, 3, 136, 136), "float32")
    ]
    assert work.outputs[0].shape == (8, 1000)
    assert work.key() == "input:float32[8x3x136x136]"
    assert work.zeros()["input"].shape == (8, 3, 136, 136)


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ("r204|d2,5,2,2,3|k7,5,7,7,5,7,5,3,5,3,5|e6,4,6,3,3,6,3,6,6,4,3", "depth 5 of stage 2"),
        ("r204|d1,2,2,2,3|k7,5,7,7,5,7,5,3,5,3|e6,4,6,3,3,6,3,6,6,4", "out of range"),
        ("r204|d2,2,2,2|k7,5,7,7,5,7,5,3|e6,4,6,3,3,6,3,6", "one depth per stage"),
        ("r204|d2,2,2,2,3|k7,5,7,7,5,7,5,3,5,3|e6,4,6,3,3,6,3,6,6,4,3", "10 kernels"),
        ("r204|d2,2,2,2,3|k7,5,7,7,5,7,5,3,5,3,5|e6,4,6,3,3,6,3,6,6,4,3,3", "12 expands"),
        ("r130|d2,2,2,2,3|k7,5,7,7,5,7,5,3,5,3,5|e6,4,6,3,3,6,3,6,6,4,3", "multiple of 4"),
        ("r228|d2,2,2,2,3|k7,5,7,7,5,7,5,3,5,3,5|e6,4,6,3,3,6,3,6,6,4,3", "from 128 to 224"),
        ("r204|d2,2,2,2,3|k7,5,9,7,5,7,5,3,5,3,5|e6,4,6,3,3,6,3,6,6,4,3", "kernel 9"),
        ("r204|d2,2,2,2,3|k7,5,7,7,5,7,5,3,5,3,5|e6,4,6,3,3,6,3,6,6,4,2", "expand 2"),
        ("r204|d2,2,2,2,3|k7,5,7,7,5,7,5,3,5,3,5", "malformed"),
        (NB201_EXAMPLE, "NB201 cell string"),
    ],
)
def test_bad_strings_name_the_problem_and_the_fix(space, bad, fragment):
    with pytest.raises(ArchitectureError, match=fragment) as info:
        space.parse(bad)
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_an_ofa_string_given_to_nb201_names_the_right_space():
    with pytest.raises(ArchitectureError, match="--space ofa_mbv3"):
        get_space("nb201").parse(HELP_REFERENCE_ARCHS[0])


def test_inactive_slots_do_not_matter(space):
    a = space.parse(HELP_REFERENCE_ARCHS[1])  # d3,2,2,3,2: many inactive slots
    raw = list(a)
    for i in np.flatnonzero(~space.active_mask(a)):
        raw[i] = 2
    assert space.format(raw) == HELP_REFERENCE_ARCHS[1]
    assert space.canonical(raw) == a
    assert space.plan(raw) == space.plan(a)
    assert int(space.active_mask(a).sum()) == 6 + 2 * 12


def test_sampling_covers_the_options(space):
    archs = space.sample(300, seed=0)
    decoded = [space.decode(a) for a in archs]
    assert {d.resolution for d in decoded} == set(RESOLUTIONS)
    assert {k for d in decoded for s in d.kernels for k in s} == {3, 5, 7}
    assert {e for d in decoded for s in d.expands for e in s} == {3, 4, 6}
    assert {n for d in decoded for n in d.depths} == {2, 3, 4}


def test_cost_features_by_part(space):
    a = space.parse(HELP_REFERENCE_ARCHS[0])
    names = space.cost_feature_names
    f = dict(zip(names, space.cost_features(a).tolist(), strict=True))
    parts = [f["macs_stem_m"]] + [f[f"macs_stage{s}_m"] for s in range(1, 6)] + [f["macs_head_m"]]
    assert f["macs_m"] == pytest.approx(sum(parts), rel=1e-6)
    assert f["active_layers"] == 16 and f["resolution"] == 196
    bigger = space.parse(HELP_REFERENCE_ARCHS[0].replace("r196", "r224"))
    assert space.cost_features(bigger)[0] > f["macs_m"]
