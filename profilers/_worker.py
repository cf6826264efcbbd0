"""The ONNX Runtime measurement worker: ``python -m hilnas.profilers._worker``.

One persistent process per :class:`~hilnas.profilers.ort.OrtProfiler`. It reads one JSON request
per line on stdin and writes one JSON response per line on a private copy of its original
stdout; fd 1 is pointed at stderr, so whatever native code prints cannot corrupt the protocol.
Only JSON crosses the pipe (no pickles). Requests:

- ``{"op": "init", "provider", "intra_op_threads", "energy_counter": spec|null, "gpu_uuid"}``
  -> ``{"ok": true, "onnxruntime_version", "pid", "energy_reason", "memory_method"}``
- ``{"op": "measure", "path", "warmup", "repetitions", "batch_size", "seed"}``
  -> ``{"ok": true, "times_ns": [...], "session_create_s", "warmup_s", "energy", "memory", ...}``
  or ``{"ok": false, "kind": "invalid_model"|"bad_input"|"run_error"|"internal", "error"}``
- ``{"op": "exit"}``

The worker exits on stdin EOF or when its parent process disappears (a watchdog thread), so a
killed profiler leaves no stray worker, even one stuck inside a hanging model.
"""

from __future__ import annotations

import gc
import json
import os
import re
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

PARENT_PID_ENV = "HILNAS_PROFILER_PARENT_PID"
# Test hook (the only way found to make the worker die like a native ORT crash: no model that
# segfaults this ONNX Runtime could be built). When set, a model whose path contains this text
# makes the worker raise SIGSEGV on itself right after its session is created.
TEST_CRASH_ENV = "HILNAS_PROFILER_TEST_CRASH"
CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"

_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def tiny_model_bytes() -> bytes:
    """A Relu on a float[1, 4] tensor as ONNX protobuf bytes (opset 13), without the onnx package.

    The worker runs it once at start so one-time ONNX Runtime initialisation (kernel registry,
    allocators, CUDA kernels) is not charged to the first real model.
    """
    shape = _field(2, _field(1, _field(1, 1)) + _field(1, _field(1, 4)))
    tensor_type = _field(1, _field(1, 1) + shape)  # elem_type FLOAT

    def value_info(name: str) -> bytes:
        return _field(1, name.encode()) + _field(2, tensor_type)

    node = _field(1, b"x") + _field(2, b"y") + _field(3, b"relu") + _field(4, b"Relu")
    graph = (
        _field(1, node)
        + _field(2, b"warmup")
        + _field(11, value_info("x"))
        + _field(12, value_info("y"))
    )
    opset = _field(1, b"") + _field(2, 13)
    return _field(1, 8) + _field(2, b"hilnas") + _field(7, graph) + _field(8, opset)


class RequestError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _status_kb(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Worker:
    def __init__(self) -> None:
        self.ort: Any = None
        self.np: Any = None
        self.provider = CPU_EP
        self.threads = 1
        self.counter: Any = None
        self.energy_reason: str | None = "no energy counter"
        self.memory_method: str | None = None
        self.nvml: Any = None
        self.gpu_handle: Any = None
        self.psutil: Any = None
        self._pending: Any = None
        self.release_s = 0.0

    def release(self) -> None:
        """Drop the last model's session (done after its response went out, off the clock)."""
        if self._pending is not None:
            t0 = time.perf_counter()
            self._pending = None
            self.release_s = time.perf_counter() - t0

    # ------------------------------------------------------------------------------ init
    def init(self, req: dict[str, Any]) -> dict[str, Any]:
        import numpy as np
        import onnxruntime as ort
        import psutil
        from hilnas.devices.energy import counter_from_spec

        self.np, self.ort, self.psutil = np, ort, psutil
        np.random.default_rng(0).standard_normal(4)  # first-use costs paid here, not by a model
        psutil.Process().num_threads()
        ort.set_default_logger_severity(3)
        self.provider = req.get("provider", CPU_EP)
        self.threads = int(req.get("intra_op_threads", 1))
        if self.provider not in (CPU_EP, CUDA_EP):
            raise RequestError("internal", f"unsupported execution provider {self.provider!r}")
        if self.provider == CUDA_EP:
            if CUDA_EP not in ort.get_available_providers():
                raise RequestError(
                    "internal",
                    f"onnxruntime {ort.__version__} in the worker offers no {CUDA_EP} "
                    f"({', '.join(ort.get_available_providers())}); install onnxruntime-gpu",
                )
            try:  # creates the CUDA context now, so no measurement pays for it
                ort.OrtValue.ortvalue_from_numpy(np.zeros(1, np.float32), "cuda", 0)
            except Exception as exc:  # CUDA unusable in this process
                raise RequestError(
                    "internal",
                    f"CUDA could not be initialised in the worker ({exc}); check the NVIDIA driver, "
                    "the CUDA/cuDNN libraries onnxruntime-gpu needs, and CUDA_VISIBLE_DEVICES",
                ) from exc
            self._init_gpu_memory(req.get("gpu_uuid"))
        else:
            self.memory_method = "vmhwm_delta" if _reset_peak_rss() else "rss_sampled_delta"
        sess = self._session(tiny_model_bytes(), "the built-in warm-up model")
        io = sess.io_binding()
        self._bind(sess, io, {"x": np.ones((1, 4), np.float32)})
        for _ in range(3):
            self._run(sess, io)
        del io, sess
        self.counter, reason = counter_from_spec(req.get("energy_counter"))
        self.energy_reason = (
            None if self.counter is not None else (req.get("energy_reason") or reason)
        )
        return {
            "ok": True,
            "onnxruntime_version": ort.__version__,
            "available_providers": list(ort.get_available_providers()),
            "pid": os.getpid(),
            "energy_reason": self.energy_reason,
            "memory_method": self.memory_method,
        }

    def _init_gpu_memory(self, uuid: str | None) -> None:
        from hilnas.devices._nvml import Nvml
        from hilnas.devices.base import DeviceError

        self.memory_method = None
        if not uuid:
            return
        try:
            self.nvml = Nvml().init()
            self.gpu_handle = self.nvml.call("nvmlDeviceGetHandleByUUID", uuid)
            self.memory_method = "nvml_process_used_delta"
        except DeviceError:
            self.nvml = self.gpu_handle = None

    # ---------------------------------------------------------------------------- memory
    def _gpu_used(self) -> tuple[int | None, str | None]:
        from hilnas.devices.base import DeviceError

        if self.gpu_handle is None:
            return None, None
        try:
            procs = self.nvml.call("nvmlDeviceGetComputeRunningProcesses", self.gpu_handle)
            for p in procs:
                if int(p.pid) == os.getpid() and p.usedGpuMemory is not None:
                    return int(p.usedGpuMemory), "nvml_process_used_delta"
            # containers see other pid numbers: fall back to the whole device (labelled)
            info = self.nvml.call("nvmlDeviceGetMemoryInfo", self.gpu_handle)
            return int(info.used), "nvml_device_used_delta"
        except DeviceError:
            return None, None

    def _memory_begin(self) -> Any:
        if self.provider == CUDA_EP:
            return self._gpu_used()
        if self.memory_method == "vmhwm_delta" and _reset_peak_rss():
            return _status_kb("VmRSS")
        return _status_kb("VmRSS")

    def _memory_sample(self, samples: list[int]) -> None:
        if self.provider != CUDA_EP and self.memory_method != "vmhwm_delta":
            rss = _status_kb("VmRSS")
            if rss is not None:
                samples.append(rss)

    def _memory_end(self, begin: Any, samples: list[int]) -> dict[str, Any]:
        if self.provider == CUDA_EP:
            before, method_before = begin
            after, method = self._gpu_used()
            if before is None or after is None or method != method_before:
                return {"peak_mb": None, "method": None}
            return {"peak_mb": max(after - before, 0) / 2**20, "method": method}
        if begin is None:
            return {"peak_mb": None, "method": None}
        if self.memory_method == "vmhwm_delta":
            peak = _status_kb("VmHWM")
        else:
            self._memory_sample(samples)
            peak = max(samples) if samples else None
        if peak is None:
            return {"peak_mb": None, "method": None}
        return {"peak_mb": max(peak - begin, 0) / 1024.0, "method": self.memory_method}

    # --------------------------------------------------------------------------- measure
    def _bind(self, sess: Any, io: Any, feeds: dict[str, Any]) -> None:
        ort = self.ort
        if self.provider == CUDA_EP:
            for name, array in feeds.items():
                io.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0))
            for out in sess.get_outputs():
                io.bind_output(out.name, "cuda", 0)
        else:
            for name, array in feeds.items():
                io.bind_cpu_input(name, array)
            for out in sess.get_outputs():
                io.bind_output(out.name)

    def _run(self, sess: Any, io: Any) -> None:
        sess.run_with_iobinding(io)
        if self.provider == CUDA_EP:
            io.synchronize_outputs()

    def _session(self, path: str | bytes, label: str | None = None) -> Any:
        ort = self.ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        if self.provider == CUDA_EP:
            providers: list[Any] = [(CUDA_EP, {"device_id": 0}), CPU_EP]
        else:
            providers = [CPU_EP]
        try:
            return ort.InferenceSession(path, so, providers=providers)
        except Exception as exc:  # whatever ORT says, the model is at fault
            text = " ".join(str(exc).split())
            if len(text) > 600:
                text = text[:600] + "..."
            raise RequestError(
                "invalid_model",
                f"{label or path} could not be loaded by ONNX Runtime {ort.__version__}: {text}. It is not a "
                "valid ONNX model for this runtime (corrupt, truncated, not ONNX, or using operators "
                "it lacks); re-export it (delete it from the ONNX cache and run again).",
            ) from exc

    def _inputs(self, sess: Any, batch_size: int, seed: int) -> dict[str, Any]:
        np = self.np
        rng = np.random.default_rng(seed)
        feeds = {}
        for arg in sess.get_inputs():
            dtype = _DTYPES.get(arg.type)
            if dtype is None:
                raise RequestError(
                    "bad_input",
                    f"input {arg.name!r} has type {arg.type}, which the profiler cannot feed",
                )
            shape = []
            for axis, dim in enumerate(arg.shape):
                if isinstance(dim, int) and dim >= 0:
                    if axis == 0 and dim != batch_size:
                        raise RequestError(
                            "bad_input",
                            f"input {arg.name!r} has batch size {dim} fixed in the model, but the device "
                            f"configuration asks for batch size {batch_size}; export the model with "
                            f"batch_size={batch_size}",
                        )
                    shape.append(dim)
                elif axis == 0:
                    shape.append(batch_size)
                else:
                    raise RequestError(
                        "bad_input",
                        f"input {arg.name!r} has a dynamic dimension {dim!r} at axis {axis}; export the "
                        "model with static shapes (only the batch axis may be dynamic)",
                    )
            if dtype.startswith("float"):
                feeds[arg.name] = rng.standard_normal(shape).astype(dtype)
            else:
                feeds[arg.name] = np.zeros(shape, dtype=dtype)
        return feeds

    def measure(self, req: dict[str, Any]) -> dict[str, Any]:
        psutil = self.psutil
        self.release()
        path = str(req["path"])
        warmup, reps = int(req["warmup"]), int(req["repetitions"])
        proc = psutil.Process()
        threads_before = proc.num_threads()
        mem_samples: list[int] = []
        mem_begin = self._memory_begin()
        t0 = time.perf_counter()
        sess = self._session(path)
        session_create_s = time.perf_counter() - t0
        self._memory_sample(mem_samples)
        session_providers = sess.get_providers()
        if self.provider == CUDA_EP and (not session_providers or session_providers[0] != CUDA_EP):
            raise RequestError(
                "run_error",
                f"ONNX Runtime did not place {path} on CUDA (providers: {session_providers}); the "
                "CUDA/cuDNN libraries onnxruntime-gpu needs are probably missing",
            )
        crash_marker = os.environ.get(TEST_CRASH_ENV)
        if crash_marker and crash_marker in path:
            os.kill(os.getpid(), signal.SIGSEGV)
        threads_with_session = proc.num_threads()
        feeds = self._inputs(sess, int(req.get("batch_size", 1)), int(req.get("seed", 0)))
        io = sess.io_binding()
        self._bind(sess, io, feeds)
        if self.provider == CUDA_EP:

            def run() -> None:
                sess.run_with_iobinding(io)
                io.synchronize_outputs()
        else:

            def run() -> None:
                sess.run_with_iobinding(io)

        try:
            t1 = time.perf_counter()
            for _ in range(warmup):
                run()
            warmup_s = time.perf_counter() - t1
            self._memory_sample(mem_samples)
            times = [0] * reps
            clock = time.perf_counter_ns
            gc_was_enabled = gc.isenabled()
            gc.disable()
            try:
                window_start = time.monotonic()
                if self.counter is not None:
                    self.counter.begin()
                for i in range(reps):
                    start = clock()
                    run()
                    times[i] = clock() - start
                energy = self.counter.end().to_dict() if self.counter is not None else None
                window_end = time.monotonic()
            finally:
                if gc_was_enabled:
                    gc.enable()
        except RequestError:
            raise
        except Exception as exc:  # a run failure is the model's fault
            raise RequestError(
                "run_error",
                f"ONNX Runtime failed while running {path}: {' '.join(str(exc).split())[:600]}",
            ) from exc
        memory = self._memory_end(mem_begin, mem_samples)
        options = sess.get_session_options()
        self._pending = (io, sess)  # released after the response is sent (see release())
        return {
            "ok": True,
            "times_ns": times,
            "session_create_s": session_create_s,
            "warmup_s": warmup_s,
            "energy": energy,
            "energy_reason": self.energy_reason,
            "memory": memory,
            "session_providers": session_providers,
            "intra_op_num_threads": options.intra_op_num_threads,
            "inter_op_num_threads": options.inter_op_num_threads,
            "threads_before_session": threads_before,
            "threads_with_session": threads_with_session,
            "window_monotonic": [window_start, window_end],
            "pid": os.getpid(),
            "previous_release_s": self.release_s,
        }


def _watchdog(parent_pid: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(3)


def main() -> None:
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # native prints go to stderr, never into the protocol
    parent = int(os.environ.get(PARENT_PID_ENV) or os.getppid())
    threading.Thread(target=_watchdog, args=(parent,), daemon=True, name="parent-watchdog").start()
    worker = Worker()
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            break
        t_request = time.perf_counter()
        try:
            req = json.loads(line)
            op = req.get("op")
            if op == "exit":
                break
            if op == "init":
                resp = worker.init(req)
            elif op == "measure":
                if worker.ort is None:
                    raise RequestError("internal", "measure before init")
                resp = worker.measure(req)
            elif op == "ping":
                resp = {"ok": True}
            else:
                raise RequestError("internal", f"unknown op {op!r}")
        except RequestError as exc:
            resp = {"ok": False, "kind": exc.kind, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - report, keep serving
            resp = {
                "ok": False,
                "kind": "internal",
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=5),
            }
        resp["worker_s"] = time.perf_counter() - t_request
        proto.write(json.dumps(resp) + "\n")
        proto.flush()
        worker.release()


if __name__ == "__main__":
    main()
