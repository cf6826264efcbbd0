"""Deterministic initial weights of OFA MobileNetV3 subnets, without torch.

An untrained subnet is what latency profiling measures, but its file must be a pure function
of (architecture, config, seed) so that the same subnet exports to the same bytes on every
machine. Each tensor is drawn from its own numpy stream seeded by ``(seed, name, shape)``:
adding or removing a layer elsewhere does not change it, and a warm process reuses the recent ones from
a small cache (the ONNX builder keeps its own cache of the serialised tensors: the head and
the stem are shared by all subnets, and a layer slot has only 3 expand ratios x 3 kernels).

The names are the ``state_dict`` keys of
:class:`~hilnas.pipeline.spaces.ofa_mbv3.torch_model.OFANetwork`; the ONNX builder reads the
same names, so the two cannot drift apart. Scales: uniform with variance ``GAIN/fan_in``, the gain
chosen by what follows the conv (:data:`GAIN`), biases U(+-1/sqrt(fan_in)) as torch's default; BatchNorm at its defaults (scale 1,
shift 0, running mean 0, running variance 1). Activations therefore stay in a normal float range
through all 20 layers (no denormals, which would distort CPU latency).
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable, Iterator, Mapping
from functools import partial

import numpy as np
from hilnas.pipeline.spaces.ofa_mbv3.space import BN_EPS, Plan

#: The seed ``space.build_model`` and the default ONNX export use.
WEIGHT_SEED = 0


@functools.lru_cache(maxsize=128)
def uniform(seed: int, name: str, shape: tuple[int, ...], bound: float) -> np.ndarray:
    """U(-bound, bound) float32 of ``shape``, one stream per (seed, name, shape); read-only."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), *shape])
    out = rng.random(shape, dtype=np.float32)
    out *= np.float32(2 * bound)
    out -= np.float32(bound)
    out.flags.writeable = False
    return out


def _conv(seed: int, name: str, shape: tuple[int, ...], gain: float) -> np.ndarray:
    fan_in = math.prod(shape[1:])
    return uniform(seed, name, shape, math.sqrt(3.0 * gain / fan_in))


#: Variance gain of a conv by what follows it (2 before ReLU or hard-swish, as He's rule; 1 for
#: a linear projection; 2 for a projection after a squeeze-excite gate, which halves its input).
#: Chosen so that random subnets keep activations of order 1-10 through all stages.
GAIN = {"relu": 2.0, "hswish": 2.0, "linear": 1.0, "se_project": 2.0}


def _bn(out: dict[str, Callable[[], np.ndarray]], prefix: str, c: int) -> None:
    ones, zeros = partial(np.ones, c, np.float32), partial(np.zeros, c, np.float32)
    out[f"{prefix}.weight"], out[f"{prefix}.bias"] = ones, zeros
    out[f"{prefix}.running_mean"], out[f"{prefix}.running_var"] = zeros, ones


def state_spec(plan: Plan, seed: int = WEIGHT_SEED) -> dict[str, Callable[[], np.ndarray]]:
    """How to make every parameter and BN buffer of ``plan``'s network, by ``state_dict`` name."""
    out: dict[str, Callable[[], np.ndarray]] = {}
    out["stem.conv.weight"] = partial(
        _conv, seed, "stem.conv.weight", (plan.stem, plan.in_channels, 3, 3), GAIN["hswish"]
    )
    _bn(out, "stem.bn", plan.stem)
    for b in plan.blocks:
        p = b.path
        if b.expand:
            name = f"{p}.expand.conv.weight"
            out[name] = partial(_conv, seed, name, (b.c_mid, b.c_in, 1, 1), GAIN[b.act])
            _bn(out, f"{p}.expand.bn", b.c_mid)
        name = f"{p}.dw.conv.weight"
        out[name] = partial(_conv, seed, name, (b.c_mid, 1, b.kernel, b.kernel), GAIN[b.act])
        _bn(out, f"{p}.dw.bn", b.c_mid)
        if b.squeeze:
            for part, c_in, c_out in (
                ("reduce", b.c_mid, b.squeeze),
                ("expand", b.squeeze, b.c_mid),
            ):
                name = f"{p}.se.{part}"
                out[f"{name}.weight"] = partial(
                    _conv, seed, f"{name}.weight", (c_out, c_in, 1, 1), GAIN["linear"]
                )
                out[f"{name}.bias"] = partial(
                    uniform, seed, f"{name}.bias", (c_out,), 1 / math.sqrt(c_in)
                )
        name = f"{p}.project.conv.weight"
        gain = GAIN["se_project"] if b.squeeze else GAIN["linear"]
        out[name] = partial(_conv, seed, name, (b.c_out, b.c_mid, 1, 1), gain)
        _bn(out, f"{p}.project.bn", b.c_out)
    c_last = plan.blocks[-1].c_out
    name = "head.expand.conv.weight"
    out[name] = partial(_conv, seed, name, (plan.final_expand, c_last, 1, 1), GAIN["hswish"])
    _bn(out, "head.expand.bn", plan.final_expand)
    shape = (plan.last_channel, plan.final_expand, 1, 1)
    out["head.mix.weight"] = partial(_conv, seed, "head.mix.weight", shape, GAIN["hswish"])
    shape = (plan.num_classes, plan.last_channel)
    out["classifier.weight"] = partial(_conv, seed, "classifier.weight", shape, GAIN["linear"])
    out["classifier.bias"] = partial(
        uniform, seed, "classifier.bias", (plan.num_classes,), 1 / math.sqrt(plan.last_channel)
    )
    return out


def initial_state(plan: Plan, seed: int = WEIGHT_SEED) -> dict[str, np.ndarray]:
    """Every parameter and BN buffer of the network of ``plan``, by ``state_dict`` name."""
    return {name: make() for name, make in state_spec(plan, seed).items()}


class LazyState(Mapping[str, np.ndarray]):
    """``initial_state`` computed only for the names read (the ONNX builder's cache hits need
    none of them)."""

    def __init__(self, plan: Plan, seed: int = WEIGHT_SEED) -> None:
        self._spec = state_spec(plan, seed)

    def __getitem__(self, name: str) -> np.ndarray:
        return self._spec[name]()

    def __iter__(self) -> Iterator[str]:
        return iter(self._spec)

    def __len__(self) -> int:
        return len(self._spec)


def fold_bn(
    weight: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    eps: float = BN_EPS,
) -> tuple[np.ndarray, np.ndarray]:
    """``bn(conv(x, weight))`` in eval mode as one conv: ``(weight * scale, beta - mean * scale)``."""
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    w = weight * scale.astype(np.float32).reshape(-1, *([1] * (weight.ndim - 1)))
    b = (beta.astype(np.float64) - mean.astype(np.float64) * scale).astype(np.float32)
    return w, b
