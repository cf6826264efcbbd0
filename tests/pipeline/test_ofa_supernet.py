"""The OFA MobileNetV3 weight-sharing supernet: elastic kernel, expand and depth, extraction
of a standalone subnet (checked against the supernet's own forward), gradients, export."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from hilnas.pipeline.spaces import get_space
from hilnas.pipeline.spaces.ofa_mbv3.onnx_builder import build_onnx
from hilnas.pipeline.spaces.ofa_mbv3.space import DEPTH_POS, KERNEL_POS
from hilnas.pipeline.spaces.ofa_mbv3.supernet import calibrate_batch_norm

# CPU-sized: width 0.35, 10 classes, 48x48 inputs (the supernet runs at the size of x)
SIZE = 48


@pytest.fixture(scope="module")
def space():
    return get_space("ofa_mbv3")


@pytest.fixture(scope="module")
def cfg(space):
    return space.make_config(width_mult=0.35, num_classes=10)


@pytest.fixture(scope="module")
def net(space, cfg):
    return space.build_supernet(cfg, seed=0)


def test_extracted_subnet_computes_what_the_supernet_computes(space, cfg, net):
    x = torch.randn(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    for a in space.sample(3, seed=2) + [space.parse(space.reference_strings()[3])]:
        sub = space.plan(a, cfg)
        model = net.extract(a)
        assert model.plan == sub
        assert sum(p.numel() for p in model.parameters()) == space.params(a, cfg)
        with torch.no_grad():
            want = net(x, torch.from_numpy(space.one_hot(a)))
            got = model.train()(x)  # batch statistics, as the supernet
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)


def test_choices_change_the_output_and_inactive_ones_do_not(space, net):
    x = torch.randn(2, 3, SIZE, SIZE)
    a = space.parse("r128|d2,2,2,2,2|k3,3,3,3,3,3,3,3,3,3|e3,3,3,3,3,3,3,3,3,3")
    b = space.parse("r128|d2,2,2,2,2|k7,3,3,3,3,3,3,3,3,3|e3,3,3,3,3,3,3,3,3,3")
    c = space.parse("r128|d2,2,2,2,2|k3,3,3,3,3,3,3,3,3,3|e6,3,3,3,3,3,3,3,3,3")
    d = space.parse("r128|d3,2,2,2,2|k3,3,3,3,3,3,3,3,3,3,3|e3,3,3,3,3,3,3,3,3,3,3")
    with torch.no_grad():
        outs = [net(x, torch.from_numpy(space.one_hot(v))) for v in (a, b, c, d)]
        raw = list(a)
        raw[KERNEL_POS + 3] = 2  # kernel of stage 1, layer 4 (inactive at depth 2) -> 7
        same = net(x, torch.from_numpy(space.one_hot(raw)))
    for other in outs[1:]:
        assert not torch.allclose(outs[0], other)
    assert torch.equal(same, outs[0])


def test_gradients_reach_weights_and_the_selected_options(space, net):
    a = space.parse("r160|d4,3,2,4,3|" + "k" + ",".join(["5"] * 16) + "|e" + ",".join(["4"] * 16))
    oh = torch.from_numpy(space.one_hot(a)).requires_grad_()
    net.zero_grad()
    net(torch.randn(2, 3, SIZE, SIZE), oh).logsumexp(1).mean().backward()
    g = oh.grad.abs().sum(1).numpy()
    active = space.active_mask(a)
    layers = np.flatnonzero(active)[6:]  # kernels and expands of the 16 active layers
    assert (g[layers] > 0).all() and (g[~active] == 0).all()
    assert g[DEPTH_POS] > 0 and g[DEPTH_POS + 2] == 0  # depth 4 keeps layers 3-4; depth 2 none
    slot = net.stages[0][0]
    assert slot.dw.weight.grad is not None
    crop = slot.dw.weight.grad[: slot.dw.weight.shape[0]].abs().sum((0, 1))
    assert crop[1:6, 1:6].sum() > 0 and crop[0].sum() == 0  # only the centre 5x5 was used
    assert net.stages[2][3].dw.weight.grad is None or not net.stages[2][3].dw.weight.grad.any()


def test_calibrated_subnet_exports_and_matches_in_onnx_runtime(space, cfg, net):
    a = space.sample(1, seed=9)[0]
    model = net.extract(a)
    gen = torch.Generator().manual_seed(1)
    calibrate_batch_norm(model, [torch.randn(8, 3, SIZE, SIZE, generator=gen) for _ in range(2)])
    assert not model.training
    assert float(model.stem.bn.running_var.sub(1).abs().max()) > 1e-3  # statistics were set
    proto = build_onnx(space, a, cfg, 1, 17, model=model)
    r = space.decode(a).resolution
    x = np.random.default_rng(0).standard_normal((1, 3, r, r)).astype(np.float32)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    got = sess.run(None, {"input": x})[0]
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))


def test_seeded_initialisation(space, cfg, net):
    again = space.build_supernet(cfg, seed=0)
    other = space.build_supernet(cfg, seed=1)
    a, b, c = (m.stages[1][0].dw.weight for m in (net, again, other))
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="one-hot"):
        net(torch.randn(1, 3, SIZE, SIZE), torch.zeros(6, 5))
