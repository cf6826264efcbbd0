"""The OFA MobileNetV3 direct ONNX builder against the torch module, in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hilnas.devices.errors import InvalidInputError
from hilnas.pipeline.spaces import get_space
from hilnas.pipeline.spaces.ofa_mbv3.onnx_builder import build_onnx
from hilnas.pipeline.spaces.ofa_mbv3.reference import HELP_REFERENCE_ARCHS

SMALLEST = "r128|d2,2,2,2,2|k3,3,3,3,3,3,3,3,3,3|e3,3,3,3,3,3,3,3,3,3"
LARGEST = "r224|d4,4,4,4,4|k" + ",".join(["7"] * 20) + "|e" + ",".join(["6"] * 20)


@pytest.fixture(scope="module")
def space():
    return get_space("ofa_mbv3")


def _run(proto, x: np.ndarray) -> np.ndarray:
    onnx.checker.check_model(proto)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def _torch(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))


@pytest.mark.parametrize("text", [SMALLEST, HELP_REFERENCE_ARCHS[4]])
def test_matches_torch_with_random_bn_statistics(space, text):
    """A module whose BN layers hold non-trivial statistics: checks the folding."""
    arch = space.parse(text)
    cfg = space.make_config(width_mult=0.5, num_classes=10)
    model = space.build_model(arch, cfg)
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.rand(c, generator=gen) + 0.5
            m.bias.data = torch.randn(c, generator=gen) * 0.1
            m.running_mean = torch.randn(c, generator=gen) * 0.1
            m.running_var = torch.rand(c, generator=gen) + 0.5
    x = np.random.default_rng(0).standard_normal(space.workload(arch, cfg, 2).inputs[0].shape)
    x = x.astype(np.float32)
    got = _run(build_onnx(space, arch, cfg, 2, 17, model=model), x)
    _close(got, _torch(model, x))
    default = _run(space.build_onnx(arch, cfg, 2, 17), x)  # the unmodified weights differ
    assert np.abs(default - got).max() > 1e-3


def test_largest_subnet_at_full_width(space):
    arch = space.parse(LARGEST)
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    _close(_run(space.build_onnx(arch, None, 1, 17), x), _torch(space.build_model(arch), x))


def test_opsets_without_hardswish_give_the_same_network(space):
    arch = space.parse(SMALLEST)
    x = np.random.default_rng(2).standard_normal((1, 3, 128, 128)).astype(np.float32)
    old = space.build_onnx(arch, None, 1, 13)
    assert "HardSwish" not in {n.op_type for n in old.graph.node}
    new = space.build_onnx(arch, None, 1, 17)
    assert "HardSwish" in {n.op_type for n in new.graph.node}
    _close(_run(old, x), _run(new, x))


def test_graph_interface_and_deterministic_bytes(space):
    arch = space.parse(HELP_REFERENCE_ARCHS[0])
    proto = space.build_onnx(arch, None, 4, 17)
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [
        4,
        3,
        196,
        196,
    ]
    assert [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim] == [4, 1000]
    assert proto.doc_string == f"{HELP_REFERENCE_ARCHS[0]} w1.2-in3-cls1000 batch 4"
    ops = [n.op_type for n in proto.graph.node]
    assert (
        ops.count("Conv")
        == 1 + 2 + sum(3 + (2 if b.squeeze else 0) for b in space.plan(arch).blocks[1:]) + 2
    )
    assert "BatchNormalization" not in ops
    raw = proto.SerializeToString()
    assert raw == space.build_onnx(arch, None, 4, 17).SerializeToString()
    other = space.build_onnx(space.parse(HELP_REFERENCE_ARCHS[1]), None, 4, 17)
    assert other.SerializeToString() != raw


def test_building_leaves_the_global_generator_alone(space):
    state = torch.random.get_rng_state()
    space.build_model(space.parse(SMALLEST))
    space.build_onnx(space.parse(SMALLEST), None, 1, 17)
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize(
    "kwargs, match",
    [({"batch_size": 0}, "batch_size"), ({"opset": 9}, "opset"), ({"opset": "17"}, "opset")],
)
def test_bad_arguments(space, kwargs, match):
    args = {"batch_size": 1, "opset": 17} | kwargs
    with pytest.raises(InvalidInputError, match=match):
        space.build_onnx(space.parse(SMALLEST), None, args["batch_size"], args["opset"])


def test_a_module_of_another_architecture_or_mode_is_rejected(space):
    arch = space.parse(SMALLEST)
    other = space.build_model(space.parse(HELP_REFERENCE_ARCHS[4]))
    with pytest.raises(ValueError, match="another architecture"):
        build_onnx(space, arch, None, 1, 17, model=other)
    model = space.build_model(arch).train()
    with pytest.raises(ValueError, match="training mode"):
        build_onnx(space, arch, None, 1, 17, model=model)
    with pytest.raises(InvalidInputError, match="OFAConfig"):
        space.build_onnx(arch, get_space("nb201").default_model_config(), 1, 17)


def test_cached_default_weights_give_the_bytes_of_the_module(space):
    """The builder caches serialised default tensors; the module path folds afresh."""
    from hilnas.pipeline.spaces.ofa_mbv3 import onnx_builder

    for text in (HELP_REFERENCE_ARCHS[5], SMALLEST):
        arch = space.parse(text)
        cached = space.build_onnx(arch, None, 1, 17).SerializeToString()
        assert cached == space.build_onnx(arch, None, 1, 17).SerializeToString()
        onnx_builder._RAW_CACHE.clear()
        fresh = space.build_onnx(arch, None, 1, 17).SerializeToString()
        module = build_onnx(space, arch, None, 1, 17, model=space.build_model(arch))
        assert cached == fresh == module.SerializeToString()
