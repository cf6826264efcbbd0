"""The direct NB201 ONNX builder against the torch module, run with ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from hilnas.pipeline.spaces import ModelConfig, get_space
from hilnas.pipeline.spaces.nb201 import live_edges
from hilnas.pipeline.spaces.nb201.onnx_builder import build_onnx

ATOL = 1e-4
RTOL = 1e-4


@pytest.fixture(scope="module")
def space():
    return get_space("nb201")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: thread start-up and contention would dominate (2-core CI machines)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _session(model_bytes: bytes):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial BN statistics and affine parameters, so the BN folding is really exercised."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                if m.weight is not None:
                    m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=gen) * 0.2)
    return model.eval()


def run_both(space, arch, cfg, batch, *, opset=17, seed=None):
    model = space.build_model(arch, cfg)
    if seed is not None:
        randomize(model, seed)
    proto = build_onnx(space, arch, cfg, batch, opset, model=model)
    onnx.checker.check_model(proto, full_check=True)
    x = np.random.default_rng(0).standard_normal(cfg.input_shape(batch)).astype(np.float32)
    sess = _session(proto.SerializeToString())
    got = sess.run(["logits"], {"input": x})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    return got, want


def assert_close(got, want):
    assert got.shape == want.shape
    scale = max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got - want).max())
    assert err <= ATOL + RTOL * scale, f"max abs error {err} (output scale {scale})"


SMALL = ModelConfig(channels=4, cells_per_stage=1, input_size=8, in_channels=1, num_classes=3)
#: the digits skeleton of supernet mode: pooled reductions (the residual block's shortcut alone)
DIGITS = ModelConfig(
    channels=8, cells_per_stage=1, input_size=8, in_channels=1, num_classes=10, reduction="pool"
)


@pytest.mark.parametrize(
    "arch",
    [(0,) * 6, (3,) * 6, (1,) * 6, (2,) * 6, (4,) * 6, (0, 3, 3, 0, 3, 3), (3, 0, 0, 0, 1, 0)],
    ids=lambda a: "".join(map(str, a)),
)
def test_special_architectures_default_config(space, arch):
    got, want = run_both(space, arch, space.default_model_config(), 1, seed=1)
    assert_close(got, want)


def test_random_sample_small_config_randomized_bn(space):
    # 30 random architectures + the reference ones on a small skeleton, batch 2, random BN stats
    archs = space.sample(30, seed=7) + space.reference_architectures()
    for i, arch in enumerate(archs):
        got, want = run_both(space, arch, SMALL, 2, seed=100 + i)
        assert_close(got, want)


@pytest.mark.parametrize(
    "cfg,batch",
    [
        (
            ModelConfig(
                channels=8, cells_per_stage=2, input_size=16, in_channels=3, num_classes=10
            ),
            3,
        ),
        (ModelConfig(channels=4, cells_per_stage=1, input_size=8, in_channels=1, num_classes=1), 1),
        (
            ModelConfig(channels=6, cells_per_stage=3, input_size=12, in_channels=2, num_classes=5),
            2,
        ),
        (ModelConfig(channels=4, cells_per_stage=1, input_size=4, in_channels=1, num_classes=2), 1),
        (DIGITS, 1),
        (
            ModelConfig(
                channels=6,
                cells_per_stage=2,
                input_size=12,
                in_channels=2,
                num_classes=5,
                reduction="pool",
            ),
            3,
        ),
    ],
    ids=lambda v: v.key() if isinstance(v, ModelConfig) else f"b{v}",
)
def test_configs_and_batches(space, cfg, batch):
    for j, arch in enumerate(space.sample(5, seed=cfg.channels) + [(0,) * 6, (3,) * 6]):
        got, want = run_both(space, arch, cfg, batch, seed=j)
        assert_close(got, want)


def test_default_weights_without_model_argument(space):
    arch = space.parse(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    )
    proto = build_onnx(space, arch, SMALL, 1, 17)
    model = space.build_model(arch, SMALL)
    x = np.random.default_rng(1).standard_normal(SMALL.input_shape(1)).astype(np.float32)
    got = _session(proto.SerializeToString()).run(None, {"input": x})[0]
    with torch.no_grad():
        assert_close(got, model(torch.from_numpy(x)).numpy())


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(),
        SMALL,
        DIGITS,
        ModelConfig(channels=6, cells_per_stage=3, input_size=12, in_channels=2, num_classes=5),
    ],
    ids=lambda c: c.key(),
)
def test_replayed_weights_are_the_modules_bit_for_bit(space, cfg):
    """The default path (no module built) writes exactly the bytes of the module path."""
    archs = space.sample(12 if cfg == SMALL else 4, seed=cfg.channels)
    archs += [(0,) * 6, (3,) * 6, (2,) * 6, (0, 4, 3, 0, 3, 1)]
    for arch in archs:
        replayed = build_onnx(space, arch, cfg, 2, 17).SerializeToString()
        module = build_onnx(space, arch, cfg, 2, 17, model=space.build_model(arch, cfg))
        assert replayed == module.SerializeToString(), arch


def test_replay_leaves_the_global_generator_alone(space):
    state = torch.random.get_rng_state()
    build_onnx(space, (3,) * 6, SMALL, 1, 17)
    assert torch.equal(state, torch.random.get_rng_state())


def test_module_with_another_structure_is_rejected(space):
    model = space.build_model((3,) * 6, SMALL)
    model.cells[0].edges["0"][1] = torch.nn.Conv2d(4, 4, 3, padding=1, bias=True)
    with pytest.raises(ValueError, match="no bias"):
        build_onnx(space, (3,) * 6, SMALL, 1, 17, model=model)
    model = space.build_model((3,) * 6, SMALL)
    model.cells[0].edges["5"][1].padding = (0, 0)
    with pytest.raises(ValueError, match=r"cells.0.edges.5.1: padding"):
        build_onnx(space, (3,) * 6, SMALL, 1, 17, model=model)
    model = space.build_model((4,) * 6, SMALL)
    model.cells[2].edges["1"] = torch.nn.MaxPool2d(3, 1, 1)
    with pytest.raises(ValueError, match="expected AvgPool2d, found MaxPool2d"):
        build_onnx(space, (4,) * 6, SMALL, 1, 17, model=model)
    model = space.build_model((1,) * 6, SMALL)
    with pytest.raises(ValueError, match="expected DiscreteCell, found ResidualReduction"):
        cfg2 = ModelConfig(
            channels=4, cells_per_stage=2, input_size=8, in_channels=1, num_classes=3
        )
        build_onnx(space, (1,) * 6, cfg2, 1, 17, model=model)


def test_graph_interface_and_pruning(space):
    cfg = ModelConfig(channels=4, cells_per_stage=2, input_size=8, in_channels=1, num_classes=3)
    arch = (3, 0, 3, 0, 0, 3)  # a chain 0 -> 1 -> 2 -> 3 of 3x3 convs
    proto = build_onnx(space, arch, cfg, 2, 17)
    g = proto.graph
    assert [i.name for i in g.input] == ["input"]
    assert [o.name for o in g.output] == ["logits"]
    dims = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 1, 8, 8]
    assert [d.dim_value for d in g.output[0].type.tensor_type.shape.dim] == [2, 3]
    ops = [n.op_type for n in g.node]
    # BN folded everywhere but the head; one Conv per live conv edge per cell + stem + reductions
    assert ops.count("BatchNormalization") == 1
    live_convs = sum(
        1 for op, on in zip(arch, live_edges(arch), strict=False) if on and op in (2, 3)
    )
    assert ops.count("Conv") == 1 + 6 * live_convs + 2 * 3
    # no Mul (no dead cell) and no initializer is unused
    assert "Mul" not in ops
    used = {i for n in g.node for i in n.input}
    assert {t.name for t in g.initializer} <= used
    assert proto.opset_import[0].version == 17


def test_dead_edges_are_not_built(space):
    # node 1 is dead (edge 1<-0 is none), so edges 2<-1 and 3<-1 are dropped even if they are convs
    arch = (0, 4, 3, 0, 3, 1)
    assert live_edges(arch) == (False, True, False, False, False, True)
    proto = build_onnx(space, arch, SMALL, 1, 17)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Conv") == 1 + 2 * 3  # stem + reductions only: no cell conv survives
    assert ops.count("AveragePool") == 3 + 2  # one pool per cell + the two shortcuts
    got, want = run_both(space, arch, SMALL, 1, seed=3)
    assert_close(got, want)


def test_all_dead_cell_outputs_zeros_and_keeps_the_network(space):
    proto = build_onnx(space, (0,) * 6, SMALL, 1, 17)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Mul") == 3  # one per cell
    assert ops.count("Conv") == 1 + 2 * 3  # stem and reductions are still computed
    zero = [t for t in proto.graph.initializer if t.name == "zero"]
    assert len(zero) == 1 and list(zero[0].dims) == []
    for batch in (1, 4):
        got, want = run_both(space, (0,) * 6, SMALL, batch, seed=5)
        assert_close(got, want)


def test_opsets(space):
    arch = space.sample(1, seed=3)[0]
    for opset in (13, 17, 18):
        got, want = run_both(space, arch, SMALL, 1, opset=opset, seed=2)
        assert_close(got, want)


def test_deterministic_bytes(space):
    arch = space.sample(1, seed=11)[0]
    a = build_onnx(space, arch, SMALL, 1, 17).SerializeToString()
    b = build_onnx(space, arch, SMALL, 1, 17).SerializeToString()
    assert a == b


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"opset": 5}, "opset"),
        ({"opset": 10_000}, "opset"),
        ({"batch_size": 0}, "batch_size"),
        ({"config": ModelConfig(input_size=30)}, "multiple of 4"),
    ],
)
def test_bad_arguments(space, kwargs, match):
    args = {"config": SMALL, "batch_size": 1, "opset": 17, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_onnx(space, (3,) * 6, args["config"], args["batch_size"], args["opset"])


def test_model_of_another_architecture_is_rejected(space):
    model = space.build_model((3,) * 6, SMALL)
    with pytest.raises(ValueError, match="not the architecture"):
        build_onnx(space, (2,) * 6, SMALL, 1, 17, model=model)
    with pytest.raises(ValueError, match="training mode"):
        build_onnx(space, (3,) * 6, SMALL, 1, 17, model=model.train())


def test_space_hook_returns_the_direct_builder(space):
    proto = space.build_onnx((1, 2, 3, 4, 0, 1), SMALL, 1, 17)
    assert proto.producer_name == "hilnas.nb201_onnx"


def test_a_module_with_the_other_reduction_is_rejected(space):
    residual = ModelConfig(
        channels=8, cells_per_stage=1, input_size=8, in_channels=1, num_classes=10
    )
    with pytest.raises(ValueError, match="PooledReduction"):
        build_onnx(space, (3,) * 6, DIGITS, 1, 17, model=space.build_model((3,) * 6, residual))
