"""One conformance suite run over every registered search space (the contract of
hilnas.pipeline.spaces.base): strings, canonical form, sampling, encodings, workload, ONNX
export in ONNX Runtime against the torch module, cost features, supernet, references."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hilnas.devices.errors import InvalidInputError, UserError
from hilnas.pipeline.spaces import (
    ArchitectureError,
    CapabilityError,
    available_spaces,
    get_space,
)

SPACES = available_spaces()


@pytest.fixture(scope="module", params=SPACES)
def space(request):
    return get_space(request.param)


@pytest.fixture(scope="module")
def archs(space):
    return space.sample(40, seed=11)


def test_registry_names_and_unknown_space(space):
    assert get_space(space.name.upper()).name == space.name
    with pytest.raises(InvalidInputError, match="use one of") as info:
        get_space("no_such_space")
    assert isinstance(info.value, ValueError) and isinstance(info.value, UserError)
    assert space.name in str(info.value)


def test_decisions_options_and_mask(space):
    assert len(space.decisions) == len(space.options) == space.num_decisions > 0
    assert len(set(space.decisions)) == space.num_decisions
    mask = space.option_mask
    assert mask.shape == space.encoding_shape == (space.num_decisions, space.max_options)
    assert mask.sum(axis=1).tolist() == [len(o) for o in space.options]
    assert all(len(set(o)) == len(o) >= 1 for o in space.options)
    assert space.size() >= 1


def test_string_round_trip(space, archs):
    for a in archs + space.reference_architectures():
        text = space.format(a)
        assert space.parse(text) == space.canonical(a) == a
        assert space.format(space.parse(text)) == text
        assert space.parse(f"  {text}\n") == a


def test_canonical_form_collapses_inactive_decisions(space, archs):
    rng = np.random.default_rng(0)
    counts = space.option_counts
    for a in archs:
        active = space.active_mask(a)
        assert active.shape == (space.num_decisions,) and active.dtype == bool
        assert space.canonical(space.canonical(a)) == space.canonical(a)
        other = tuple(
            v if on else int(rng.integers(counts[d]))
            for d, (v, on) in enumerate(zip(a, active, strict=True))
        )
        assert space.format(other) == space.format(a)
        assert space.canonical(other) == a
        assert np.array_equal(space.one_hot(other), space.one_hot(a))
        # changing an active decision changes the network
        d = int(np.flatnonzero(active & (np.asarray(counts) > 1))[0])
        changed = list(a)
        changed[d] = (a[d] + 1) % counts[d]
        assert space.format(changed) != space.format(a)


def test_a_space_with_conditional_decisions_has_two_codes_for_one_network(space, archs):
    if not space.conditional:
        assert all(space.active_mask(a).all() for a in archs)
        return
    a = next(a for a in archs if not space.active_mask(a).all())
    d = int(np.flatnonzero(~space.active_mask(a))[0])
    other = list(a)
    other[d] = 1
    assert tuple(other) != a and space.format(other) == space.format(a)


def test_seeded_sampling_is_deterministic_distinct_and_canonical(space, archs):
    assert space.sample(40, seed=11) == archs
    assert space.sample(40, seed=12) != archs
    assert len(set(archs)) == 40
    assert len({space.format(a) for a in archs}) == 40
    assert all(space.canonical(a) == a for a in archs)
    refs = space.reference_architectures()
    again = space.sample(60, seed=11, exclude=refs + archs[:5])
    assert not set(again) & set(refs + archs[:5])
    with pytest.raises(InvalidInputError):
        space.sample(-1)


def test_encoding_shape_and_mask(space, archs):
    mask = space.option_mask
    batch = space.one_hot_batch(archs[:5])
    assert batch.shape == (5, *space.encoding_shape) and batch.dtype == np.float32
    for a, enc in zip(archs[:5], batch, strict=True):
        assert np.array_equal(enc, space.one_hot(a))
        active = space.active_mask(a)
        assert np.array_equal(enc.sum(axis=1), active.astype(np.float32))
        assert not enc[~mask].any()
        rows = np.flatnonzero(active)
        assert np.array_equal(enc[rows].argmax(axis=1), np.asarray(a)[rows])


def test_enumeration_only_where_declared(space, archs):
    if space.enumerable:
        for a in archs[:5]:
            assert space.from_index(space.index(a)) == a
            assert space.coerce(space.index(a)) == a
    else:
        with pytest.raises(CapabilityError, match="string"):
            space.index(archs[0])
        with pytest.raises(CapabilityError):
            space.coerce(3)
        with pytest.raises(CapabilityError):
            space.all_architectures()
    assert space.coerce(space.format(archs[0])) == archs[0]
    assert space.coerce(list(archs[0])) == archs[0]


def test_bad_input_is_an_architecture_error(space):
    for bad in ("", "garbage", "|||", "r|d|k|e"):
        with pytest.raises(ArchitectureError):
            space.parse(bad)
    with pytest.raises(ArchitectureError):
        space.validate((0,) * (space.num_decisions + 1))
    with pytest.raises(ArchitectureError):
        space.validate(tuple(len(o) for o in space.options))
    with pytest.raises(InvalidInputError, match="unknown model setting"):
        space.make_config(no_such_field=1)


@pytest.mark.parametrize("pair", list(itertools.permutations(SPACES, 2)))
def test_a_string_of_another_space_is_rejected_naming_it(pair):
    a, b = (get_space(n) for n in pair)
    with pytest.raises(ArchitectureError) as info:
        a.parse(b.example)
    assert a.name in str(info.value)


def _feed(work, seed: int) -> dict[str, np.ndarray]:
    """Random inputs of the declared shapes: normal floats, 0/1 for integer inputs (ids)."""
    rng = np.random.default_rng(seed)
    return {
        s.name: (
            rng.integers(0, 2, s.shape).astype(s.dtype)
            if np.issubdtype(np.dtype(s.dtype), np.integer)
            else rng.standard_normal(s.shape).astype(s.dtype)
        )
        for s in work.inputs
    }


def _onnx_bytes(space, arch, cfg, batch: int, work) -> bytes:
    """The space's direct builder, or a traced export where it has none (as the exporter)."""
    import io

    import torch

    proto = space.build_onnx(arch, cfg, batch, 17)
    if proto is not None:
        return proto.SerializeToString()
    buf = io.BytesIO()
    dummy = tuple(torch.from_numpy(v) for v in _feed(work, 0).values())
    torch.onnx.export(
        space.build_model(arch, cfg),
        dummy,
        buf,
        input_names=[s.name for s in work.inputs],
        output_names=[s.name for s in work.outputs],
        opset_version=17,
        dynamo=False,
    )
    return buf.getvalue()


def test_workload_and_onnx_export_match_the_torch_module(space, archs):
    import onnxruntime as ort
    import torch

    cfg = space.small_model_config()
    for a in archs[:2]:
        for batch in (1, 2):
            work = space.workload(a, cfg, batch)
            sess = ort.InferenceSession(
                _onnx_bytes(space, a, cfg, batch, work), providers=["CPUExecutionProvider"]
            )
            declared = [(s.name, list(s.shape)) for s in work.inputs]
            assert [(i.name, list(i.shape)) for i in sess.get_inputs()] == declared
            assert [o.name for o in sess.get_outputs()] == [s.name for s in work.outputs]
            feed = _feed(work, batch)
            got = sess.run(None, feed)
            model = space.build_model(a, cfg)
            assert not model.training
            with torch.no_grad():
                want = model(*(torch.from_numpy(feed[s.name]) for s in work.inputs))
            want = [want] if isinstance(want, torch.Tensor) else list(want)
            for g, w, spec in zip(got, want, work.outputs, strict=True):
                w = w.numpy()
                assert g.shape == w.shape == spec.shape
                scale = max(1.0, float(np.abs(w).max()))
                assert np.abs(g - w).max() <= 1e-4 * scale


def test_models_are_deterministic(space, archs):
    import torch

    cfg = space.small_model_config()
    a, b = space.build_model(archs[0], cfg), space.build_model(archs[0], cfg)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    one = space.build_onnx(archs[0], cfg, 1, 17)
    if one is not None:  # a direct builder writes the same bytes every time
        again = space.build_onnx(archs[0], cfg, 1, 17)
        assert one.SerializeToString() == again.SerializeToString()


def test_cost_features(space, archs):
    names = space.cost_feature_names
    assert len(names) == len(set(names)) >= 2 and {"macs_m", "params_m"} <= set(names)
    cfg = space.small_model_config()
    feats = space.cost_features_batch(archs[:4], cfg)
    assert feats.shape == (4, len(names)) and feats.dtype == np.float32
    assert np.isfinite(feats).all() and (feats[:, names.index("macs_m")] > 0).all()
    for a, row in zip(archs[:2], feats, strict=False):
        assert np.array_equal(row, space.cost_features(a, cfg))
        assert row[names.index("macs_m")] == pytest.approx(space.flops(a, cfg), rel=1e-6)
        model = space.build_model(a, cfg)
        n_params = sum(p.numel() for p in model.parameters())
        assert row[names.index("params_m")] == pytest.approx(n_params / 1e6, rel=1e-6)
    assert len({tuple(r) for r in space.cost_features_batch(archs, cfg)}) > 1


def test_macs_agree_with_the_torch_module(space, archs):
    """Multiply-accumulates of every Conv2d and Linear, counted with forward hooks (for the
    convolutional spaces, whose MACs are exactly those)."""
    import torch

    cfg = space.small_model_config()
    if not any(isinstance(m, torch.nn.Conv2d) for m in space.build_model(archs[0], cfg).modules()):
        pytest.skip("hook counting covers Conv2d/Linear networks only")
    for a in archs[:2]:
        model = space.build_model(a, cfg)
        total = [0]

        def hook(mod, inp, out, total=total):
            if isinstance(mod, torch.nn.Conv2d):
                k = mod.kernel_size[0] * mod.kernel_size[1]
                total[0] += out[0].numel() * (mod.in_channels // mod.groups) * k
            else:
                total[0] += mod.in_features * mod.out_features

        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.register_forward_hook(hook)
        work = space.workload(a, cfg, 1)
        with torch.no_grad():
            model(*(torch.from_numpy(v) for v in _feed(work, 0).values()))
        assert space.flops(a, cfg) == pytest.approx(total[0] / 1e6, rel=1e-9)


def test_supernet_forward_and_backward(space, archs):
    import torch

    if not space.supports_supernet:
        with pytest.raises(CapabilityError):
            space.build_supernet()
        return
    cfg = space.small_model_config()
    net = space.build_supernet(cfg, seed=0)
    cheap = sorted(archs, key=lambda a: space.flops(a, cfg))[:2]  # CPU-friendly inputs
    work = space.workload(cheap[0], cfg, 2)
    inputs = [torch.from_numpy(v) for v in _feed(work, 0).values()]
    for a in cheap:
        net.zero_grad()
        out = net(*inputs, torch.from_numpy(space.one_hot(a)))
        assert out.shape == work.outputs[0].shape and torch.isfinite(out).all()
        out.square().mean().backward()
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_reference_architectures_and_description(space):
    refs = space.reference_architectures()
    assert len(refs) >= 1 and len(set(refs)) == len(refs)
    assert all(space.canonical(a) == a for a in refs)
    info = json.loads(json.dumps(space.describe()))
    assert info["name"] == space.name
    assert info["reference_architectures"] == space.reference_strings()
    assert [d["name"] for d in info["decisions"]] == list(space.decisions)
    assert int(info["size"]) == space.size()
    assert space.parse(info["example"]) is not None
