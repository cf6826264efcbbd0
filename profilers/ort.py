"""ONNX Runtime latency / energy / memory profiler with an isolated, persistent worker process.

How a model is measured (inside the worker, see ``_worker.py``):

1. an ``InferenceSession`` is created (timed separately: ``session_create_s``) with
   ``intra_op_num_threads`` from the device configuration (0 = ORT's default, one per physical
   core), ``inter_op_num_threads=1``, sequential execution, all graph optimisations;
2. inputs are random (float: standard normal, seed 0; integer/bool: zeros) and bound once with
   IO binding - on CUDA they live on the GPU, outputs are bound on the GPU and every run is
   followed by ``synchronize_outputs()``;
3. ``warmup`` untimed runs, then ``repetitions`` runs each timed with ``time.perf_counter_ns``
   (Python's GC paused); the energy counter's window spans exactly the timed runs;
4. peak memory: CPU - the worker's peak RSS over session creation + runs minus its RSS before
   (``vmhwm_delta``: Linux VmHWM after resetting it through /proc/self/clear_refs; elsewhere
   ``rss_sampled_delta``, RSS sampled after creation, warm-up and runs: a lower bound);
   CUDA - GPU memory used by the worker after the runs minus before the session
   (``nvml_process_used_delta``; ``nvml_device_used_delta`` where NVML cannot see the worker's
   pid, e.g. in containers, which then includes other processes).

The worker stays up across models (one start per profiler, ~0.3-1 s), so per-model overhead is
session creation + warm-up + a JSON round trip. A model that crashes the worker, exceeds the
per-model timeout or cannot be loaded gives ``Measurement(status=FAILED, error=...)``; the worker
is killed if needed and restarted, and the next model is measured normally.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from hilnas.devices.base import DeviceConfig, DeviceInfo, DeviceKind
from hilnas.devices.discovery import CPU_EP, CUDA_EP, available_execution_providers
from hilnas.devices.energy import EnergyMethod, EnergyReading, counter_for
from hilnas.devices.errors import InvalidInputError
from hilnas.profilers._worker import PARENT_PID_ENV
from hilnas.profilers.base import (
    InvalidModelError,
    Measurement,
    MeasurementStatus,
    Profiler,
    ProfilerError,
    ProfileSettings,
)
from hilnas.profilers.stats import latency_stats

log = logging.getLogger(__name__)

_STDERR_TAIL_CHARS = 1500


class _WorkerTimeout(Exception):
    pass


class _WorkerDied(Exception):
    pass


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _ort_version_installed() -> str:
    for dist in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def _describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "stopped responding"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with status {returncode}"


class OrtProfiler(Profiler):
    """ONNX Runtime profiler for one device configuration (see the module docstring).

    ``OrtProfiler(device, config, settings)``; use as a context manager. Keyword-only:
    ``powercap_root`` - where the RAPL powercap tree is (default ``/sys/class/powercap``; tests
    point it at a simulated tree); ``startup_timeout_s`` - how long the worker may take to start
    (import onnxruntime, create the CUDA context).

    Raises ValueError for a configuration that does not fit the device, and
    ExecutionProviderUnavailableError / ProfilerError when this machine cannot run it.
    ``last_details`` holds the worker's raw report of the last model (threads seen, session
    providers, energy window), for diagnostics. Not thread-safe: one ``measure`` at a time.
    """

    def __init__(
        self,
        device: DeviceInfo,
        config: DeviceConfig,
        settings: ProfileSettings | None = None,
        *,
        powercap_root: str | os.PathLike[str] | None = None,
        startup_timeout_s: float = 120.0,
    ) -> None:
        self.device = device
        self.config = config
        self.settings = settings if settings is not None else ProfileSettings()
        if config.device_id != device.id:
            raise InvalidInputError(
                f"device configuration {config.key} is for {config.device_id}, not for {device.id}"
            )
        if device.kind is DeviceKind.EXTERNAL:
            raise InvalidInputError(
                f"{device.id} is an external device: it is measured elsewhere, not here"
            )
        expected = CPU_EP if device.kind is DeviceKind.CPU else CUDA_EP
        if config.execution_provider != expected:
            raise InvalidInputError(
                f"{device.id} is a {device.kind.value.upper()}; measure it with {expected}, "
                f"not {config.execution_provider}"
            )
        if expected == CUDA_EP:
            from hilnas.devices.discovery import default_execution_provider

            default_execution_provider(device)  # raises with the fix when CUDA EP is missing
        if startup_timeout_s <= 0:
            raise InvalidInputError(f"startup_timeout_s must be > 0, got {startup_timeout_s}")
        self.startup_timeout_s = startup_timeout_s
        self.powercap_root = Path(powercap_root) if powercap_root is not None else None
        counter, reason = counter_for(device, powercap_root=self.powercap_root)
        self._counter_spec = counter.spec() if counter is not None else None
        self._energy_reason = reason
        if counter is not None:
            counter.close()
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: Any = None
        self._selector: selectors.BaseSelector | None = None
        self._buffer = b""
        self._hello: dict[str, Any] = {}
        self._restart_error: Exception | None = None
        self._closed = False
        self._in_flight = False
        self.worker_starts = 0
        self.worker_start_s = 0.0
        self.last_details: dict[str, Any] = {}

    # ------------------------------------------------------------------ worker lifecycle
    @property
    def worker_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def onnxruntime_version(self) -> str:
        return self._hello.get("onnxruntime_version") or _ort_version_installed()

    def start(self) -> None:
        """Start the worker now (``measure`` does it when needed). Raises ProfilerError."""
        if self._closed:
            raise ProfilerError("this OrtProfiler is closed; create a new one")
        if self._proc is not None and self._proc.poll() is None:
            return
        self._stop_worker()
        t0 = time.perf_counter()
        env = dict(os.environ)
        env[PARENT_PID_ENV] = str(os.getpid())
        if self.config.intra_op_threads > 0:
            env["OMP_NUM_THREADS"] = str(self.config.intra_op_threads)
        if self.device.kind is DeviceKind.GPU:
            # the worker sees exactly this GPU, as CUDA device 0
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
            env["CUDA_VISIBLE_DEVICES"] = str(
                self.device.properties.get("uuid") or self.device.properties.get("index", 0)
            )
        self._stderr = tempfile.TemporaryFile(prefix="hilnas-worker-", suffix=".log")
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "hilnas.profilers._worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=env,
                close_fds=True,
                start_new_session=True,  # a Ctrl-C reaches the profiler, which stops the worker
            )
        except OSError as exc:
            raise ProfilerError(f"could not start the profiler worker ({exc})") from exc
        self._selector = selectors.DefaultSelector()
        assert self._proc.stdout is not None
        self._selector.register(self._proc.stdout, selectors.EVENT_READ)
        self._buffer = b""
        init = {
            "op": "init",
            "provider": self.config.execution_provider,
            "intra_op_threads": self.config.intra_op_threads,
            "energy_counter": self._counter_spec,
            "energy_reason": self._energy_reason,
            "gpu_uuid": self.device.properties.get("uuid")
            if self.device.kind is DeviceKind.GPU
            else None,
        }
        try:
            self._send(init)
            hello = self._receive(self.startup_timeout_s)
        except (_WorkerTimeout, _WorkerDied, OSError) as exc:
            tail = self._stderr_tail(0)
            self._stop_worker()
            what = (
                "did not start in time"
                if isinstance(exc, _WorkerTimeout)
                else "died while starting"
            )
            raise ProfilerError(
                f"the profiler worker {what} ({sys.executable} -m hilnas.profilers._worker)"
                + (f"; its output: {tail}" if tail else "")
            ) from exc
        if not hello.get("ok"):
            self._stop_worker()
            raise ProfilerError(f"the profiler worker could not start: {hello.get('error')}")
        self._hello = hello
        self.worker_starts += 1
        self.worker_start_s += time.perf_counter() - t0
        self._restart_error = None

    def _stop_worker(self) -> None:
        proc, self._proc = self._proc, None
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        if proc is not None:
            if proc.poll() is None:
                try:
                    if proc.stdin is not None:
                        proc.stdin.write(b'{"op": "exit"}\n')
                        proc.stdin.flush()
                except OSError:
                    pass
                try:
                    proc.wait(timeout=2.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _kill_worker(self) -> int | None:
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
            return None

    def _restart(self) -> None:
        """Replace a dead or killed worker now, so the next model does not pay for it."""
        self._stop_worker()
        try:
            self.start()
        except ProfilerError as exc:
            self._restart_error = exc  # raised by the next measure()
            log.warning("profiler worker restart failed: %s", exc)

    def close(self) -> None:
        self._stop_worker()
        self._closed = True

    def __enter__(self) -> OrtProfiler:
        self.start()
        return self

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self._stop_worker()
        except Exception:  # noqa: BLE001
            pass

    # ------------------------------------------------------------------------- protocol
    def _send(self, message: dict[str, Any]) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write((json.dumps(message) + "\n").encode())
        self._proc.stdin.flush()

    def _receive(self, timeout_s: float) -> dict[str, Any]:
        assert (
            self._proc is not None and self._proc.stdout is not None and self._selector is not None
        )
        deadline = time.monotonic() + timeout_s
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _WorkerTimeout
            if not self._selector.select(remaining):
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise _WorkerDied
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            return json.loads(line)
        except ValueError as exc:  # the protocol is broken: treat the worker as dead
            raise _WorkerDied from exc

    def _stderr_offset(self) -> int:
        if self._stderr is None:
            return 0
        self._stderr.seek(0, os.SEEK_END)
        return self._stderr.tell()

    def _stderr_tail(self, offset: int) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(offset)
            text = self._stderr.read().decode(errors="replace")
        except OSError:
            return ""
        text = " ".join(text.split())
        return text[-_STDERR_TAIL_CHARS:]

    # -------------------------------------------------------------------------- measure
    def measure(self, onnx_path: str | os.PathLike[str]) -> Measurement:
        if self._closed:
            raise ProfilerError("this OrtProfiler is closed; create a new one")
        t_start = time.perf_counter()
        started_at = _now()
        path = Path(onnx_path)
        if not path.is_file():
            what = "is a directory, not an ONNX file" if path.is_dir() else "does not exist"
            return self._failed(
                f"{path} {what}; export the model first (or fix the path)", t_start, started_at
            )
        if self._in_flight:
            # an earlier measure() was interrupted (e.g. KeyboardInterrupt) while the worker was
            # busy: its late answer must not be taken for this model's, so replace the worker
            self._kill_worker()
            self._stop_worker()
            self._in_flight = False
        if self._proc is None or self._proc.poll() is not None:
            if self._restart_error is not None:
                error, self._restart_error = self._restart_error, None
                self._stop_worker()
                try:
                    self.start()
                except ProfilerError:
                    raise error from None
            else:
                self.start()
        settings = self.settings
        request = {
            "op": "measure",
            "path": str(path.resolve()),
            "warmup": settings.warmup,
            "repetitions": settings.repetitions,
            "batch_size": self.config.batch_size,
            "seed": 0,
        }
        offset = self._stderr_offset()
        self._in_flight = True
        try:
            try:
                self._send(request)
            except OSError:  # the idle worker died since the last model: not this model's fault
                self._restart()
                if self._proc is None:
                    raise ProfilerError(
                        f"the profiler worker cannot be restarted: {self._restart_error}"
                    ) from None
                offset = self._stderr_offset()
                self._send(request)
            response = self._receive(settings.timeout_s)
            self._in_flight = False
        except _WorkerTimeout:
            self._in_flight = False
            self._kill_worker()
            self._restart()
            return self._failed(
                f"timed out after {settings.timeout_s:g} s measuring {path} (session creation + "
                f"{settings.warmup} warm-up + {settings.repetitions} timed runs); the worker was "
                "killed and restarted. If the model is only slow, raise the timeout or lower the "
                "repetitions; otherwise the model hangs ONNX Runtime: check or re-export it.",
                t_start,
                started_at,
            )
        except _WorkerDied:
            self._in_flight = False
            returncode = self._kill_worker()
            tail = self._stderr_tail(offset)
            self._restart()
            return self._failed(
                f"the ONNX Runtime worker {_describe_exit(returncode)} while measuring {path} "
                "(a crash inside ONNX Runtime or the model); the worker was restarted and the "
                "profiler goes on. Re-export the model or report it to ONNX Runtime."
                + (f" Worker output: {tail}" if tail else ""),
                t_start,
                started_at,
            )
        self.last_details = response
        if not response.get("ok"):
            return self._failed(
                response.get("error") or "the worker reported an unknown error",
                t_start,
                started_at,
                session_create_s=response.get("session_create_s"),
            )
        return self._ok(response, t_start, started_at)

    # ------------------------------------------------------------------------- records
    def _provenance(self) -> dict[str, Any]:
        return {
            "onnxruntime_version": self.onnxruntime_version,
            "execution_provider": self.config.execution_provider,
            "intra_op_threads": self.config.intra_op_threads,
            "batch_size": self.config.batch_size,
            "warmup": self.settings.warmup,
            "repetitions": self.settings.repetitions,
        }

    def _failed(
        self, error: str, t_start: float, started_at: str, *, session_create_s: float | None = None
    ) -> Measurement:
        log.info("measurement failed: %s", error)
        return Measurement(
            status=MeasurementStatus.FAILED,
            error=error,
            latency_ms_median=None,
            latency_ms_mean=None,
            latency_ms_p90=None,
            latency_ms_iqr=None,
            latency_ms_cv=None,
            latency_ms_min=None,
            energy_mj=None,
            energy_method=EnergyMethod.UNKNOWN,
            energy_reason="not measured: the model failed",
            peak_memory_mb=None,
            memory_method=None,
            **self._provenance(),
            session_create_s=session_create_s,
            timed_s=None,
            wall_s=time.perf_counter() - t_start,
            started_at=started_at,
            finished_at=_now(),
        )

    def _ok(self, response: dict[str, Any], t_start: float, started_at: str) -> Measurement:
        times_ns = response["times_ns"]
        stats = latency_stats(times_ns)
        reps = len(times_ns)
        energy = response.get("energy")
        if energy is None:
            reading = EnergyReading.unknown(
                response.get("energy_reason")
                or self._energy_reason
                or "no energy counter for this device"
            )
        else:
            reading = EnergyReading.from_dict(energy)
        energy_mj = reading.energy_mj / reps if reading.energy_mj is not None else None
        memory = response.get("memory") or {}
        return Measurement(
            status=MeasurementStatus.OK,
            error=None,
            latency_ms_median=stats.median_ms,
            latency_ms_mean=stats.mean_ms,
            latency_ms_p90=stats.p90_ms,
            latency_ms_iqr=stats.iqr_ms,
            latency_ms_cv=stats.cv,
            latency_ms_min=stats.min_ms,
            energy_mj=energy_mj,
            energy_method=reading.method if energy_mj is not None else EnergyMethod.UNKNOWN,
            energy_reason=reading.reason if energy_mj is None else None,
            peak_memory_mb=memory.get("peak_mb"),
            memory_method=memory.get("method") if memory.get("peak_mb") is not None else None,
            **self._provenance(),
            session_create_s=response.get("session_create_s"),
            timed_s=sum(times_ns) / 1e9,
            wall_s=time.perf_counter() - t_start,
            started_at=started_at,
            finished_at=_now(),
        )


def validate_onnx_file(path: str | os.PathLike[str]) -> None:
    """Raise InvalidModelError (naming the file and the fix) unless ONNX Runtime can load it.

    Loads the file in this process with the CPU provider and graph optimisations off (fast);
    ``onnx`` is not needed.
    """
    p = Path(path)
    fix = "re-export it (delete it from the ONNX cache and run again)"
    if not p.exists():
        raise InvalidModelError(f"{p} does not exist; export the model first (or fix the path)")
    if not p.is_file():
        raise InvalidModelError(f"{p} is not a file; pass the path of an .onnx model")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise InvalidModelError(
            f"{p} cannot be read ({exc.strerror or exc}); check its permissions"
        ) from exc
    if size == 0:
        raise InvalidModelError(f"{p} is empty, not an ONNX model; {fix}")
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    try:
        ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # any load failure means the file is bad
        text = " ".join(str(exc).split())
        if len(text) > 400:
            text = text[:400] + "..."
        raise InvalidModelError(
            f"{p} is not a valid ONNX model (ONNX Runtime {ort.__version__} cannot load it: {text}); {fix}"
        ) from exc


__all__ = ["OrtProfiler", "available_execution_providers", "validate_onnx_file"]
