"""ONNX export of GPT-S decoders in two phases, prefill and decode, with a key/value cache.

Graph interface (int64 tokens, float32 everything else; ``i`` runs over the blocks):

- ``prefill``: ``input_ids [B, T]`` -> ``logits [B, 1, vocab]`` (the last position: what a
  generator needs; ``all_logits=True`` gives ``[B, T, vocab]`` as HW-GPT-Bench measured) and
  ``present_key_i``, ``present_value_i`` ``[B, heads[i], T, 64]``.
- ``decode``: ``input_ids [B, 1]`` and ``past_key_i``, ``past_value_i`` ``[B, heads[i], P, 64]``
  -> ``logits [B, 1, vocab]`` and ``present_key_i``, ``present_value_i`` ``[B, heads[i], P+1, 64]``.

The phase and ``all_logits`` come from the :class:`~.space.GPTConfig`; batch, prompt and cache
lengths are dynamic axes, so one file per (architecture, phase, vocab, context) serves every
batch size and ``seq_len``; :func:`workload_inputs` builds the feed for one. Export uses
``torch.onnx.export(..., dynamo=False)`` (the tracer, as the project's generic
exporter) without constant folding: folding would store the tied LM head a second time,
transposed (+154 MB at the top of the space); ONNX Runtime folds the transposes itself when it
loads the file. The largest subnet is ~497 MB of float32 weights per phase and takes 9-25 s to
trace on a busy 2-core machine; ``external_data=True`` stores the weights in a
``<name>.onnx.data`` file beside the graph (required above protobuf's 2 GB; optional below).
:mod:`.onnx_direct` builds the same graphs without torch in well under a second.
"""

from __future__ import annotations

import io
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from hilnas.devices.errors import check_number
from hilnas.pipeline.spaces.gpt_s.model import GPT, PhaseModel
from hilnas.pipeline.spaces.gpt_s.space import HEAD_SIZE, GPTArch, GPTConfig, GPTSpace

INPUT_IDS = "input_ids"
LOGITS = "logits"


def past_names(layers: int) -> list[str]:
    """Input names of the cache, ``past_key_0, past_value_0, past_key_1, ...``."""
    return [f"past_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]


def present_names(layers: int) -> list[str]:
    """Output names of the updated cache, in the same order as :func:`past_names`."""
    return [f"present_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]


@dataclass(frozen=True, slots=True)
class ExportResult:
    """One exported graph: where it is, its size on disk (graph + external data) and timing."""

    path: Path
    phase: str
    onnx_bytes: int
    data_bytes: int
    export_s: float
    num_params: int

    @property
    def total_bytes(self) -> int:
        return self.onnx_bytes + self.data_bytes


def _arch(arch: GPTArch | Sequence[int] | str) -> GPTArch:
    if isinstance(arch, GPTArch):
        return arch
    space = GPTSpace()
    return space.decode(space.coerce(arch))


def export_gpt(
    arch: GPTArch | Sequence[int] | str,
    path: str | os.PathLike[str],
    config: GPTConfig | None = None,
    *,
    external_data: bool = False,
    opset: int = 17,
    model: GPT | None = None,
) -> ExportResult:
    """Trace the configuration's phase of an architecture's decoder to ``path``.

    ``model`` reuses an already built decoder (its architecture and vocabulary must match).
    """
    a = _arch(arch)
    cfg = config or GPTConfig()
    path = Path(path)
    start = time.perf_counter()
    net = model if model is not None else GPT(a, cfg).eval()
    wrapper = PhaseModel(net, cfg).eval()
    n = a.layers
    # example shapes: two sequences of 3 tokens, or one new token against 2 cached ones
    ids = torch.zeros((2, 3 if cfg.phase == "prefill" else 1), dtype=torch.int64)
    names_out = [LOGITS, *present_names(n)]
    axes: dict[str, dict[int, str]] = {INPUT_IDS: {0: "batch"}, LOGITS: {0: "batch"}}
    if cfg.phase == "prefill":
        args: tuple[torch.Tensor, ...] = (ids,)
        names_in = [INPUT_IDS]
        axes[INPUT_IDS][1] = "seq"
        if cfg.all_logits:
            axes[LOGITS][1] = "seq"
        for name in names_out[1:]:
            axes[name] = {0: "batch", 2: "seq"}
    else:
        past = [torch.zeros((2, h, 2, HEAD_SIZE)) for h in a.heads for _ in ("key", "value")]
        args = (ids, *past)
        names_in = [INPUT_IDS, *past_names(n)]
        for name in names_in[1:]:
            axes[name] = {0: "batch", 2: "past"}
        for name in names_out[1:]:
            axes[name] = {0: "batch", 2: "past_plus_1"}
    path.parent.mkdir(parents=True, exist_ok=True)
    target: io.BytesIO | str = io.BytesIO() if external_data else str(path)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            args,
            target,
            input_names=names_in,
            output_names=names_out,
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=False,
            dynamo=False,
        )
    if isinstance(target, io.BytesIO):
        _save_external(target.getvalue(), path)
    data = path.with_name(path.name + ".data")
    return ExportResult(
        path=path,
        phase=cfg.phase,
        onnx_bytes=path.stat().st_size,
        data_bytes=data.stat().st_size if data.exists() else 0,
        export_s=time.perf_counter() - start,
        num_params=net.num_params(),
    )


def _save_external(blob: bytes, path: Path) -> None:
    import onnx

    proto = onnx.load_from_string(blob)
    onnx.save_model(
        proto,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=path.name + ".data",
        size_threshold=1024,
    )


def workload_inputs(
    arch: GPTArch | Sequence[int] | str,
    config: GPTConfig | None = None,
    batch_size: int = 1,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """The ONNX Runtime feed of one pass: random token ids (int64) and, for decode, a random
    float32 cache of ``seq_len`` positions (shapes as ``GPTSpace.workload`` declares)."""
    a = _arch(arch)
    cfg = config or GPTConfig()
    b = check_number("batch_size", batch_size, low=1, high=65_536)
    rng = np.random.default_rng(seed)
    feed = {INPUT_IDS: rng.integers(0, cfg.vocab_size, (b, cfg.new_tokens), dtype=np.int64)}
    if cfg.phase == "decode":
        for name, h in zip(past_names(a.layers), (h for h in a.heads for _ in "kv"), strict=True):
            feed[name] = rng.standard_normal((b, h, cfg.past_len, HEAD_SIZE), dtype=np.float32)
    return feed
