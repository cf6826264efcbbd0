"""Measure GPT-S ONNX export: time, file size, session creation and peak memory.

``python -m hilnas.pipeline.spaces.gpt_s.export_bench [smallest|largest ...]`` prints one JSON
line per (architecture, exporter, phase): the traced export (``torch.onnx.export``, weights in
the file) and the direct builder with generated and with seeded weights, for GPT-2's vocabulary
and context. Each measurement runs in its own process so that ``peak_rss_mb`` is its own.
The largest architecture needs ~3 GB of memory and a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

ARCHS = {
    "smallest": {
        "embed": 192,
        "layers": 10,
        "mlp_ratio": [2] * 10,
        "heads": [4] * 10,
        "bias": False,
    },
    "largest": {
        "embed": 768,
        "layers": 12,
        "mlp_ratio": [4] * 12,
        "heads": [12] * 12,
        "bias": True,
    },
}
METHODS = ("traced", "direct-generated", "direct-seeded")


def measure(which: str, method: str, phase: str) -> dict[str, object]:
    """One export and one ONNX Runtime session of it; sizes in MB, times in s."""
    import onnxruntime as ort
    from hilnas.pipeline.spaces.gpt_s.space import GPTConfig, GPTSpace

    space = GPTSpace()
    arch = space.decode(space.encode(ARCHS[which]))
    cfg = GPTConfig(phase=phase)
    import onnx  # noqa: F401  (imported before the clock starts, as in a warm process)

    if method == "traced":
        from hilnas.pipeline.spaces.gpt_s.onnx_export import export_gpt
    else:
        from hilnas.pipeline.spaces.gpt_s.onnx_direct import build_gpt_onnx
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        start = time.perf_counter()  # imports done: the export alone (model build included)
        if method == "traced":
            export_gpt(arch, path, cfg)
        else:
            proto = build_gpt_onnx(arch, cfg, dynamic=True, weights=method.split("-")[1])
            path.write_bytes(proto.SerializeToString())
            del proto
        export_s = time.perf_counter() - start
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        start = time.perf_counter()
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        session_s = time.perf_counter() - start
    return {
        "arch": which,
        "method": method,
        "phase": phase,
        "export_s": round(export_s, 2),
        "file_mb": round(size / 1e6, 3),
        "session_s": round(session_s, 2),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def _child(queue: mp.Queue, *args: str) -> None:
    queue.put(measure(*args))


def main(archs: list[str]) -> None:
    ctx = mp.get_context("spawn")
    for which in archs:
        for method in METHODS:
            for phase in ("prefill", "decode"):
                queue = ctx.Queue()
                proc = ctx.Process(target=_child, args=(queue, which, method, phase))
                proc.start()
                result = queue.get()
                proc.join()
                print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or list(ARCHS))
