"""The NB201 search space against the public reference table (official order and format)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hilnas.pipeline.spaces import ArchitectureError, get_space

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "nb201"


@pytest.fixture(scope="module")
def space():
    return get_space("nb201")


def test_index_and_string_agree_with_official_table(space):
    if not SHARED.exists():
        pytest.skip("../shared/data is not beside this checkout")
    with (SHARED / "accuracy.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 15625
    for row in rows:
        idx = int(row["idx"])
        assert space.index(space.parse(row["arch"])) == idx
        assert space.format(space.from_index(idx)) == row["arch"]


def test_roundtrip_and_order_over_whole_space(space):
    archs = space.all_architectures()
    assert len(archs) == len(set(archs)) == 15625 == space.size()
    assert space.format(archs[0]) == (
        "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
    )
    for i in range(0, 15625, 997):
        assert space.parse(space.format(archs[i])) == archs[i]
        assert space.index(archs[i]) == i


def test_reference_architectures(space):
    refs = space.reference_architectures()
    assert [space.index(a) for a in refs] == [
        11982,
        431,
        55,
        9,
        14451,
        8636,
        9881,
        13479,
        6196,
        1462,
    ]


def test_sampling_is_seeded_distinct_and_respects_exclusion(space):
    a = space.sample(50, seed=3)
    assert a == space.sample(50, seed=3)
    assert a != space.sample(50, seed=4)
    assert len(set(a)) == 50
    refs = space.reference_architectures()
    b = space.sample(200, seed=1, exclude=refs)
    assert not set(b) & set(refs)
    with pytest.raises(ValueError, match="only"):
        space.sample(15626, seed=0)


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|", "malformed"),
        ("|conv_7x7~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown operation"),
        ("|none~0|+|none~0|none~2|+|none~0|none~1|none~2|", "numbered"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "inputs"),
        ("", "malformed"),
    ],
)
def test_malformed_strings_are_rejected_with_a_clear_message(space, bad, fragment):
    with pytest.raises(ArchitectureError, match=fragment):
        space.parse(bad)


def test_codes_are_validated(space):
    with pytest.raises(ArchitectureError, match="expected 6"):
        space.validate((0, 1))
    with pytest.raises(ArchitectureError, match="options 0..4"):
        space.validate((0, 1, 2, 3, 4, 5))
    with pytest.raises(IndexError):
        space.from_index(15625)


def test_one_hot(space):
    arch = space.from_index(1)
    oh = space.one_hot(arch)
    assert oh.shape == (6, 5) and oh.sum() == 6
    assert tuple(np.argmax(oh, axis=1)) == arch
    assert space.one_hot_batch([arch, arch]).shape == (2, 6, 5)


def test_model_builds_with_configurable_skeleton(space):
    torch = pytest.importorskip("torch")
    from hilnas.pipeline.spaces import ModelConfig

    arch = space.from_index(1)
    cfg = ModelConfig(channels=8, cells_per_stage=1, input_size=8, in_channels=1, num_classes=4)
    model = space.build_model(arch, cfg)
    out = model(torch.randn(3, 1, 8, 8))
    assert out.shape == (3, 4)
    # deterministic weights: the same architecture gives the same network
    again = space.build_model(arch, cfg)
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(model(x), again(x))


def test_disconnected_architecture_still_runs(space):
    torch = pytest.importorskip("torch")
    arch = space.parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    model = space.build_model(arch)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert space.flops(arch) < space.flops(
        space.parse(
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
        )
    )


def test_pooled_reductions_skeleton(space):
    """``reduction="pool"`` keeps only the residual block's shortcut between stages: fewer
    parameters and MACs, its own config key (the residual default keeps the stored keys)."""
    torch = pytest.importorskip("torch")
    from hilnas.pipeline.spaces import ModelConfig

    residual = ModelConfig(
        channels=8, cells_per_stage=1, input_size=8, in_channels=1, num_classes=10
    )
    pooled = ModelConfig(
        channels=8, cells_per_stage=1, input_size=8, in_channels=1, num_classes=10, reduction="pool"
    )
    assert residual.key() == "C8-N1-in1x8-cls10" and pooled.key() == "C8-N1-in1x8-cls10-rpool"
    arch = (3,) * 6
    params = {
        c.reduction: sum(p.numel() for p in space.build_model(arch, c).parameters())
        for c in (residual, pooled)
    }
    assert params["pool"] < params["residual"]
    # the two stride-2 3x3 convolutions of each residual block, exactly: (16*8 + 16*16) * 9 MACs
    # per output pixel at 4x4, then (32*16 + 32*32) * 9 at 2x2
    removed = (16 * 8 * 9 + 16 * 16 * 9) * 16 + (32 * 16 * 9 + 32 * 32 * 9) * 4
    assert space.flops(arch, residual) - space.flops(arch, pooled) == pytest.approx(removed / 1e6)
    assert space.build_model(arch, pooled)(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ValueError, match="unknown reduction 'stride'"):
        space.build_model(arch, ModelConfig(reduction="stride"))
