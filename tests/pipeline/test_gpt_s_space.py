"""The GPT-S space: canonical JSON, codes, order, sampling, one-hot, workloads, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hilnas.devices.errors import InvalidInputError, UserError
from hilnas.pipeline.spaces.base import ArchitectureError, CapabilityError
from hilnas.pipeline.spaces.gpt_s import GPTConfig, GPTSpace, count_params_hwgpt
from hilnas.pipeline.spaces.gpt_s.space import (
    BIAS,
    HEADS0,
    LAYERS,
    MLP0,
    SPACE_SIZE,
    count_macs,
    count_params,
)

EXAMPLE = (
    '{"embed":384,"layers":10,"mlp_ratio":[2,3,4,2,3,4,2,3,4,2],'
    '"heads":[4,8,12,4,8,12,4,8,12,4],"bias":true}'
)


@pytest.fixture(scope="module")
def space() -> GPTSpace:
    return GPTSpace()


def test_size_and_decisions(space):
    assert space.size() == SPACE_SIZE == 1_903_784_282_946
    assert space.num_decisions == 27
    assert space.decisions[:3] == ("embed", "layers", "mlp_ratio_0")
    assert space.decisions[-1] == "bias"
    assert space.options[BIAS] == ("true", "false")
    # the option mask drops the bias row's third column: 26 * 3 + 2 real options
    assert int(space.option_mask.sum()) == 80


def test_canonical_json_round_trip(space):
    code = space.parse(EXAMPLE)
    assert space.format(code) == EXAMPLE
    arch = space.decode(code)
    assert arch.embed == 384 and arch.layers == 10 and arch.bias is True
    assert arch.heads[2] == 12 and arch.mlp_ratio[2] == 4
    # whitespace and key order of the input do not matter; the output is canonical
    obj = json.loads(EXAMPLE)
    shuffled = json.dumps(dict(reversed(list(obj.items()))), indent=2)
    assert space.format(space.parse(shuffled)) == EXAMPLE
    for a in space.sample(50, seed=3):
        assert space.parse(space.format(a)) == a


def test_inactive_blocks_are_zero_and_ignored(space):
    code = space.parse(EXAMPLE)
    assert all(v == 0 for v in code[MLP0 + 10 : HEADS0])
    assert all(v == 0 for v in code[HEADS0 + 10 : BIAS])
    other = list(code)
    other[MLP0 + 11] = 1  # block 11 does not exist with layers=10
    assert space.format(other) == EXAMPLE and space.canonical(other) == code
    mask = space.active_mask(code)
    assert mask.sum() == 2 + 10 + 10 + 1
    assert space.active_mask(
        space.encode(
            {**json.loads(EXAMPLE), "layers": 12, "mlp_ratio": [2] * 12, "heads": [4] * 12}
        )
    ).all()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("not json", "is not JSON"),
        ("[1, 2]", "is a JSON object"),
        (EXAMPLE.replace('"bias":true', '"bias":true,"dropout":0.1'), "unknown keys 'dropout'"),
        (EXAMPLE.replace(',"bias":true', ""), "missing keys 'bias'"),
        (
            EXAMPLE.replace('"layers":10', '"layers":11'),
            "mlp_ratio has 10 entries but layers is 11",
        ),
        (EXAMPLE.replace('"embed":384', '"embed":512'), "embed must be one of 192, 384, 768"),
        (EXAMPLE.replace('"heads":[4,', '"heads":[5,'), r"heads\[0\] must be one of 4, 8, 12"),
        (EXAMPLE.replace('"mlp_ratio":[2,', '"mlp_ratio":[2.0,'), r"mlp_ratio\[0\] must be one of"),
        (EXAMPLE.replace('"layers":10', '"layers":true'), "layers must be one of 10, 11, 12"),
        (EXAMPLE.replace('"bias":true', '"bias":1'), "bias must be true or false"),
        (EXAMPLE.replace('"heads":[4,8,12,4,8,12,4,8,12,4]', '"heads":4'), "heads must be a list"),
    ],
)
def test_bad_strings_raise_one_line_user_errors(space, text, match):
    with pytest.raises(ArchitectureError, match=match) as info:
        space.parse(text)
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_not_enumerable(space):
    a = space.parse(EXAMPLE)
    with pytest.raises(CapabilityError, match="address its architectures by string"):
        space.index(a)
    with pytest.raises(CapabilityError):
        space.coerce(5)
    with pytest.raises(CapabilityError):
        space.all_architectures()
    assert space.coerce(EXAMPLE) == a == space.coerce(list(a))


def test_sampling_is_seeded_distinct_prefix_stable_and_per_decision(space):
    a = space.sample(600, seed=5)
    assert a == space.sample(600, seed=5)
    assert a[:100] == space.sample(100, seed=5)
    assert a != space.sample(600, seed=6)
    assert len(set(a)) == 600
    layers = np.bincount([c[LAYERS] for c in a], minlength=3)
    assert layers.min() > 150  # a third each, not 81:9:1 as uniform over architectures would be
    excluded = space.sample(600, seed=5, exclude=a[:10])
    assert not set(excluded) & set(a[:10])
    with pytest.raises(InvalidInputError):
        space.sample(-1)


def test_one_hot_zeroes_inactive_blocks(space):
    code = space.parse(EXAMPLE)
    oh = space.one_hot(code)
    assert oh.shape == (27, 3)
    assert oh[MLP0 + 10 : HEADS0].sum() == 0 and oh[HEADS0 + 10 : BIAS].sum() == 0
    assert oh[MLP0 + 9].tolist() == [1.0, 0.0, 0.0]
    batch = space.one_hot_batch([code, space.sample(1, seed=0)[0]])
    np.testing.assert_array_equal(batch[0], oh)


def test_params_count_and_reference_architectures(space):
    arch = space.decode(space.parse(EXAMPLE))
    assert count_params_hwgpt(arch) == space.params_hwgpt(space.parse(EXAMPLE))
    refs = space.reference_architectures()
    assert len(refs) == 10 and len(set(refs)) == 10
    sizes = [space.params_hwgpt(r) for r in refs]
    assert sizes == sorted(sizes) and sizes[-1] > 4 * sizes[0]
    assert refs == space.reference_architectures()


def test_config_is_the_workload_and_is_validated(space):
    dec = GPTConfig(phase="decode", seq_len=100)
    assert (dec.new_tokens, dec.past_len, dec.key()) == (1, 100, "gpt-v50257-ctx1024-decode-s100")
    assert GPTConfig(seq_len=1024).past_len == 0
    assert GPTConfig(seq_len=8, all_logits=True).key().endswith("-all")
    with pytest.raises(
        InvalidInputError, match="context is 1024, so a decode takes a seq_len from 1 to 1023"
    ):
        GPTConfig(phase="decode", seq_len=1024)
    with pytest.raises(InvalidInputError, match="seq_len=1025 is out of range"):
        GPTConfig(seq_len=1025)
    with pytest.raises(InvalidInputError, match="unknown workload phase 'generate'"):
        GPTConfig(phase="generate")
    with pytest.raises(InvalidInputError, match="seq_len"):
        GPTConfig(seq_len=0)
    with pytest.raises(InvalidInputError, match="vocab_size"):
        GPTConfig(vocab_size=0)
    assert space.make_config(phase="decode", seq_len=5).past_len == 5
    with pytest.raises(InvalidInputError, match="unknown model setting"):
        space.make_config(batch=3)
    with pytest.raises(InvalidInputError, match="batch_size=0 is out of range"):
        space.workload(space.parse(EXAMPLE), dec, 0)


def test_workload_declares_ids_cache_and_logits(space):
    a = space.parse(EXAMPLE)
    pre = space.workload(a, GPTConfig(seq_len=16), 2)
    assert [s.key() for s in pre.inputs] == ["input_ids:int64[2x16]"]
    assert pre.outputs[0].shape == (2, 1, 50257) and len(pre.outputs) == 21
    assert pre.outputs[5].name == "present_key_2" and pre.outputs[5].shape == (2, 12, 16, 64)
    dec = space.workload(a, GPTConfig(phase="decode", seq_len=16), 1)
    assert dec.inputs[0].shape == (1, 1) and dec.inputs[1].name == "past_key_0"
    assert dec.inputs[1].shape == (1, 4, 16, 64) and dec.outputs[1].shape == (1, 4, 17, 64)
    assert dec.key() != space.workload(a, GPTConfig(phase="decode", seq_len=17), 1).key()


def test_macs_params_and_cost_features(space):
    small = space.decode(space.canonical([0] * 27))
    big = space.decode(space.canonical([2] * 26 + [0]))
    pre = GPTConfig(seq_len=128)
    assert count_macs(big, pre) > 5 * count_macs(small, pre)
    assert count_macs(small, pre, 4) == 4 * count_macs(small, pre)
    # a decode step costs about one prefill token, plus attention over the cache
    one = count_macs(small, GPTConfig(phase="decode", seq_len=1))
    assert count_macs(small, GPTConfig(phase="decode", seq_len=512)) > one
    # one token of prefill by hand for the smallest network: weights x 1 token + head
    e, v = 192, 50257
    per_block = e * 3 * 256 + 256 * e + 2 * e * 2 * e + 2 * 256
    assert count_macs(small, GPTConfig(seq_len=1)) == 10 * per_block + e * v
    # the largest subnet is about 124 M parameters with GPT-2's vocabulary
    assert 124e6 < count_params(big) < 125e6
    code = space.parse(EXAMPLE)
    feats = space.cost_features(code, pre)
    names = space.cost_feature_names
    assert feats[names.index("macs_m")] == pytest.approx(space.flops(code, pre))
    assert feats[names.index("hwgpt_params_m")] * 1e6 == pytest.approx(space.params_hwgpt(code))
    assert feats[names.index("layers")] == 10


def test_canonical_clears_inactive_blocks(space):
    raw = [2] * 27
    raw[LAYERS], raw[BIAS] = 0, 1  # 10 layers: slots 10 and 11 do not exist
    code = space.canonical(raw)
    assert space.canonical(code) == code
    assert code[MLP0 + 10] == code[HEADS0 + 11] == 0 and code[MLP0 + 9] == 2
    assert space.decode(code).heads == (12,) * 10 == space.decode(raw).heads
    with pytest.raises(ArchitectureError):
        space.canonical([3] * 27)
