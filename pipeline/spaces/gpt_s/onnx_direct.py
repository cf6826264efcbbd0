"""GPT-S decoders written straight to ONNX (no torch), optionally with weights made in the graph.

Tracing the largest GPT-S subnet with ``torch.onnx.export`` takes 9-25 s on a busy 2-core
machine and writes ~497 MB per phase. This builder writes the same network (the graph of
:mod:`.model`, same interface as :mod:`.onnx_export`) in 0.02-0.04 s once ``onnx`` is imported,
with one of three kinds of weights:

- ``"generated"`` (default): every matrix is computed *inside the graph* from its flat index
  with the integer hash of :mod:`.weights`, bit-identical to the torch module's weights, so
  this graph is ``build_model``'s network exactly. The file holds 50-100 kB whatever the
  architecture. ONNX Runtime's basic optimisations (constant
  folding; on at every level but ``ORT_DISABLE_ALL``, and run before the graph is split between
  execution providers - not yet checked on a GPU) turn those nodes into ordinary initializers
  when the session is created, so inference runs the same kernels on the same shapes as with
  stored weights (interleaved CPU timings agree within noise). Latency and energy do not
  depend on the values. The cost moves to session creation: largest subnet 3-4 s and ~2.8 GB
  peak memory, against 1.3-2.8 s and ~2.2 GB for a stored-weight file. With ``ORT_DISABLE_ALL``
  the weights would be recomputed at every run: never time such a session.
- ``"seeded"``: numpy normal(0, 0.02) initializers from a seed (full size on disk).
- a mapping of a :class:`~.model.GPT`'s ``state_dict`` as numpy arrays (e.g. trained ones).

Opset 17: LayerNormalization, exact GELU as ``0.5 x (1 + erf(x / sqrt 2))`` (ORT fuses it),
the tied LM head as ``Gemm(transB=1)`` on the token embedding, so no transposed copy is kept.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from hilnas.devices.errors import InvalidInputError
from hilnas.pipeline.spaces.gpt_s.space import HEAD_SIZE, PHASES, GPTArch, GPTConfig
from hilnas.pipeline.spaces.gpt_s.weights import (
    LEHMER_A,
    LEHMER_M,
    OFFSET,
    SCALE,
    TILE_ROWS,
    TO_UNIT,
    salt,
)

INPUT_IDS = "input_ids"
LOGITS = "logits"
_NEG = float(np.finfo(np.float32).min)


def _names(layers: int, prefix: str) -> list[str]:
    return [f"{prefix}_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]


class _Builder:
    """Accumulates nodes and initializers; one method per weight or op pattern."""

    def __init__(self, weights: str | Mapping[str, np.ndarray], seed: int) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.weights = weights
        self.rng = np.random.default_rng(seed)
        self._count = 0
        self._consts: dict[tuple[str, bytes], str] = {}

    def tmp(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def node(self, op: str, inputs: Sequence[str], hint: str | None = None, **attrs: Any) -> str:
        out = self.tmp(hint or op.lower())
        self.nodes.append(self.helper.make_node(op, list(inputs), [out], **attrs))
        return out

    def named(self, op: str, inputs: Sequence[str], out: str, **attrs: Any) -> str:
        self.nodes.append(self.helper.make_node(op, list(inputs), [out], **attrs))
        return out

    def const(self, value: Any, dtype: Any = np.int64) -> str:
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str + str(arr.shape), arr.tobytes())
        if key not in self._consts:
            name = self.tmp("const")
            self.inits.append(self.numpy_helper.from_array(arr, name))
            self._consts[key] = name
        return self._consts[key]

    def param(self, name: str, shape: tuple[int, ...], kind: str, torch_t: bool = False) -> str:
        """A weight of ``shape`` (ONNX layout); ``torch_t``: the torch tensor is its transpose.

        ``kind`` is ``normal``, ``ones`` or ``zeros`` (what the seeded modes produce).
        """
        if isinstance(self.weights, Mapping):
            try:
                arr = np.asarray(self.weights[name], dtype=np.float32)
            except KeyError:
                raise InvalidInputError(
                    f"weights lack {name!r}; pass the GPT module's state_dict as numpy arrays"
                ) from None
            arr = arr.T if torch_t else arr
            if arr.shape != shape:
                raise InvalidInputError(f"weight {name!r} has shape {arr.shape}, expected {shape}")
        elif kind in ("ones", "zeros"):  # one shared constant per shape
            return self.const(np.full(shape, 1.0 if kind == "ones" else 0.0), np.float32)
        elif self.weights == "generated":
            return self._generated(name, shape)
        else:
            arr = (self.rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def _generated(self, name: str, shape: tuple[int, ...]) -> str:
        """Nodes computing :func:`~.weights.generated_matrix` (same int64 and float32 steps,
        so the same bits); taller matrices ``Tile`` the hashed block, so folding them costs one
        copy, not a chain of full-size int64 temporaries."""
        rows, cols = shape
        block = min(rows, TILE_ROWS)
        r = self.node("Range", [self.const(0), self.const(block), self.const(1)])
        c = self.node("Range", [self.const(0), self.const(cols), self.const(1)])
        r = self.node("Unsqueeze", [self.node("Mul", [r, self.const(cols)]), self.const([1])])
        h = self.node("Add", [r, self.node("Unsqueeze", [c, self.const([0])])])
        m, a = self.const(LEHMER_M), self.const(LEHMER_A)
        h = self.node(
            "Mod", [self.node("Add", [self.node("Mul", [h, a]), self.const(salt(name))]), m]
        )
        h = self.node("Mod", [self.node("Mul", [h, h]), m])
        h = self.node("Mod", [self.node("Add", [self.node("Mul", [h, a]), self.const(OFFSET)]), m])
        u = self.node("Cast", [h], to=1)  # FLOAT
        u = self.node(
            "Sub",
            [self.node("Mul", [u, self.const(TO_UNIT, np.float32)]), self.const(1.0, np.float32)],
        )
        if block == rows:
            return self.named("Mul", [u, self.const(SCALE, np.float32)], name)
        u = self.node("Mul", [u, self.const(SCALE, np.float32)])
        tiled = self.node("Tile", [u, self.const([-(-rows // block), 1])])
        return self.named(
            "Slice", [tiled, self.const([0]), self.const([rows]), self.const([0])], name
        )

    def linear(self, x: str, name: str, n_in: int, n_out: int, bias: bool) -> str:
        w = self.param(f"{name}.weight", (n_in, n_out), "normal", torch_t=True)
        y = self.node("MatMul", [x, w])
        if bias:
            y = self.node("Add", [y, self.param(f"{name}.bias", (n_out,), "zeros")])
        return y

    def layer_norm(self, x: str, name: str, width: int) -> str:
        g = self.param(f"{name}.weight", (width,), "ones")
        b = self.param(f"{name}.bias", (width,), "zeros")
        return self.node("LayerNormalization", [x, g, b], axis=-1, epsilon=1e-5)


def build_gpt_onnx(
    arch: GPTArch,
    config: GPTConfig | None = None,
    *,
    batch_size: int = 1,
    dynamic: bool = False,
    weights: str | Mapping[str, np.ndarray] = "generated",
    seed: int = 0,
    opset: int = 17,
) -> Any:
    """The ``onnx.ModelProto`` of the configuration's phase of an architecture's decoder.

    Static shapes (``batch_size`` and the configuration's ``seq_len``), as
    ``GPTSpace.workload`` declares them, or with ``dynamic=True`` symbolic batch, prompt and
    cache lengths (one file for every workload of the phase). ``weights``: see the module doc.
    """
    from onnx import TensorProto, helper

    cfg = config or GPTConfig()
    phase, vocab_size, context_length = cfg.phase, cfg.vocab_size, cfg.context_length
    if phase not in PHASES:  # pragma: no cover - GPTConfig checks it
        raise InvalidInputError(f"unknown phase {phase!r}; use one of {', '.join(PHASES)}")
    if isinstance(weights, str) and weights not in ("generated", "seeded"):
        raise InvalidInputError(
            f"unknown weights {weights!r}; use 'generated', 'seeded' or a state_dict mapping"
        )
    g = _Builder(weights, seed)
    e, n = arch.embed, arch.layers
    batch: int | str = "batch" if dynamic else batch_size
    new: int | str = ("seq" if dynamic else cfg.seq_len) if phase == "prefill" else 1
    past: int | str = "past" if dynamic else cfg.past_len
    total: int | str = (
        ("past_plus_1" if dynamic else cfg.past_len + 1) if phase == "decode" else new
    )
    inputs = [helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, [batch, new])]
    if phase == "decode":
        for name, h in zip(_names(n, "past"), (h for h in arch.heads for _ in "kv"), strict=True):
            inputs.append(
                helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, h, past, HEAD_SIZE])
            )

    wte = g.param("wte.weight", (vocab_size, e), "normal")
    wpe = g.param("wpe.weight", (context_length, e), "normal")
    t_len = g.node("Squeeze", [g.node("Shape", [INPUT_IDS], start=1, end=2)])
    if phase == "decode":
        p_len = g.node("Squeeze", [g.node("Shape", ["past_key_0"], start=2, end=3)])
    else:
        p_len = g.const(0)
    pos = g.node("Range", [p_len, g.node("Add", [p_len, t_len]), g.const(1)])
    x = g.node("Add", [g.node("Gather", [wte, INPUT_IDS]), g.node("Gather", [wpe, pos])])
    mask = None
    if phase == "prefill":  # query i sees keys j <= i (no cache before a prefill)
        steps = g.node("Range", [g.const(0), t_len, g.const(1)])
        rows = g.node("Unsqueeze", [steps, g.const([1])])
        cols = g.node("Unsqueeze", [steps, g.const([0])])
        mask = g.node("Greater", [cols, rows])
    outputs = []
    for i, (ratio, heads) in enumerate(zip(arch.mlp_ratio, arch.heads, strict=True)):
        pre, width = f"blocks.{i}", heads * HEAD_SIZE
        h = g.layer_norm(x, f"{pre}.ln_1", e)
        qkv = g.linear(h, f"{pre}.attn.qkv", e, 3 * width, arch.bias)
        q, k, v = (g.tmp(s) for s in ("q", "k", "v"))
        g.nodes.append(helper.make_node("Split", [qkv, g.const([width] * 3)], [q, k, v], axis=2))
        q, k, v = (
            g.node(
                "Transpose",
                [g.node("Reshape", [y, g.const([0, 0, heads, HEAD_SIZE])])],
                perm=[0, 2, 1, 3],
            )
            for y in (q, k, v)
        )
        k_out, v_out = f"present_key_{i}", f"present_value_{i}"
        if phase == "decode":
            g.named("Concat", [f"past_key_{i}", k], k_out, axis=2)
            g.named("Concat", [f"past_value_{i}", v], v_out, axis=2)
        else:
            g.named("Identity", [k], k_out)
            g.named("Identity", [v], v_out)
        att = g.node("MatMul", [q, g.node("Transpose", [k_out], perm=[0, 1, 3, 2])])
        att = g.node("Mul", [att, g.const(1.0 / math.sqrt(HEAD_SIZE), np.float32)])
        if mask is not None:
            att = g.node("Where", [mask, g.const(_NEG, np.float32), att])
        y = g.node("MatMul", [g.node("Softmax", [att], axis=-1), v_out])
        y = g.node("Reshape", [g.node("Transpose", [y], perm=[0, 2, 1, 3]), g.const([0, 0, width])])
        x = g.node("Add", [x, g.linear(y, f"{pre}.attn.proj", width, e, arch.bias)])
        h = g.linear(g.layer_norm(x, f"{pre}.ln_2", e), f"{pre}.mlp.0", e, ratio * e, arch.bias)
        erf = g.node("Erf", [g.node("Mul", [h, g.const(1.0 / math.sqrt(2.0), np.float32)])])
        h = g.node(
            "Mul",
            [
                g.node("Mul", [h, g.const(0.5, np.float32)]),
                g.node("Add", [erf, g.const(1.0, np.float32)]),
            ],
        )
        x = g.node("Add", [x, g.linear(h, f"{pre}.mlp.2", ratio * e, e, arch.bias)])
        for name in (k_out, v_out):
            dims = [batch, heads, total, HEAD_SIZE]
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
    x = g.layer_norm(x, "ln_f", e)
    if phase == "prefill" and not cfg.all_logits:
        x = g.node("Slice", [x, g.const([-1]), g.const([2**62]), g.const([1])])
    lead = g.node("Shape", [x], start=0, end=2)
    flat = g.node("Gemm", [g.node("Reshape", [x, g.const([-1, e])]), wte], transB=1)
    g.named("Reshape", [flat, g.node("Concat", [lead, g.const([vocab_size])], axis=0)], LOGITS)
    t_out = new if phase == "prefill" and cfg.all_logits else 1
    outputs.insert(
        0, helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, [batch, t_out, vocab_size])
    )
    graph = helper.make_graph(g.nodes, f"gpt_s_{phase}", inputs, outputs, g.inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="hilnas.gpt_s",
    )
    model.ir_version = min(model.ir_version, 8)
    return model


def torch_weights(model: Any) -> dict[str, np.ndarray]:
    """The ``state_dict`` of a :class:`~.model.GPT` as numpy arrays, for ``weights=``."""
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
