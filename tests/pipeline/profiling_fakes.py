"""Fakes of the exporter and the profiler for tests of profiling and its CLI (not collected).

Load with ``load_fakes()`` of the test modules (tests are not a package).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from hilnas.devices.base import DeviceInfo, DeviceKind, DeviceNotFoundError
from hilnas.profilers.base import EnergyMethod, Measurement, MeasurementStatus

CPU = DeviceInfo(
    id="cpu-feedbeef",
    kind=DeviceKind.CPU,
    name="Fake CPU",
    fingerprint="c" * 64,
    properties={"logical_cores": 2},
    energy_counter=None,
    energy_unavailable_reason="no RAPL powercap in the test",
    aliases=("cpu", "cpu0"),
)


def fake_get_device(name):
    if name in (CPU.id, *CPU.aliases):
        return CPU
    raise DeviceNotFoundError(
        f"unknown device {name!r}; known: {CPU.id} (aliases cpu, cpu0); "
        "`hilnas devices list` shows them"
    )


def install(monkeypatch, onnx_root: Path | None = None, **profiler_kw) -> None:
    """Patch discovery (one fake CPU) and, with ``onnx_root``, the default exporter/profiler."""
    import hilnas.devices as devices_mod
    from hilnas.pipeline import profiling

    monkeypatch.setattr(devices_mod, "get_device", fake_get_device, raising=False)
    monkeypatch.setattr(devices_mod, "discover", lambda: [CPU], raising=False)
    monkeypatch.setattr(
        devices_mod, "default_execution_provider", lambda d: "CPUExecutionProvider", raising=False
    )
    FakeProfiler.instances.clear()
    if onnx_root is not None:
        onnx_root.mkdir(parents=True, exist_ok=True)
        monkeypatch.setattr(profiling, "_default_exporter", lambda opset: FakeExporter(onnx_root))
        monkeypatch.setattr(profiling, "_default_profiler", lambda: factory(**profiler_kw))


# ----------------------------------------------------------------------------------------------
# fakes
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FakeExported:
    path: Path
    key: str
    sha256: str
    cached: bool
    export_s: float
    exporter: str = "fake"
    opset: int = 17


class FakeExporter:
    def __init__(self, root: Path, fail_on: set[str] = frozenset()) -> None:
        self.root = root
        self.calls: list[str] = []
        self.fail_on = fail_on

    def export(self, space, arch, *, batch_size=1, config=None):
        s = space.format(arch)
        self.calls.append(s)
        if s in self.fail_on:
            raise RuntimeError("tracing blew up")
        digest = hashlib.sha256(f"{s}/{batch_size}/{config.key()}".encode()).hexdigest()
        path = self.root / f"{digest}.onnx"
        cached = path.exists()
        path.write_text(s)
        return FakeExported(path, digest[:16], digest, cached, 0.0 if cached else 0.01)


class FakeProfiler:
    """Latency from the architecture string; ``crash_on`` archs return a FAILED measurement;
    ``interrupt_after`` raises KeyboardInterrupt (a stand-in for a kill) after n measures."""

    instances: list[FakeProfiler] = []

    def __init__(self, device, config, settings, *, crash_on=(), interrupt_after=None):
        self.device, self.config, self.settings = device, config, settings
        self.crash_on = set(crash_on)
        self.interrupt_after = interrupt_after
        self.measured: list[str] = []
        self.entered = False
        FakeProfiler.instances.append(self)

    def __enter__(self):
        self.entered = True
        return self

    def __exit__(self, *exc):
        self.entered = False

    def measure(self, onnx_path) -> Measurement:
        data = Path(onnx_path).read_bytes()
        try:  # FakeExporter writes the architecture string; a real ONNX file is binary
            arch = data.decode("utf-8")
        except UnicodeDecodeError:
            arch = hashlib.sha256(data).hexdigest()
        if self.interrupt_after is not None and len(self.measured) >= self.interrupt_after:
            raise KeyboardInterrupt
        self.measured.append(arch)
        c, s = self.config, self.settings
        common = dict(
            energy_mj=None,
            energy_method=EnergyMethod.UNKNOWN,
            energy_reason="no RAPL powercap in the test",
            peak_memory_mb=None,
            memory_method=None,
            onnxruntime_version="fake",
            execution_provider=c.execution_provider,
            intra_op_threads=c.intra_op_threads,
            batch_size=c.batch_size,
            warmup=s.warmup,
            repetitions=s.repetitions,
            wall_s=0.01,
            started_at="2026-01-01T00:00:00+00:00",
            finished_at="2026-01-01T00:00:00+00:00",
        )
        if arch in self.crash_on:
            return Measurement(
                status=MeasurementStatus.FAILED,
                error="worker died with SIGSEGV",
                latency_ms_median=None,
                latency_ms_mean=None,
                latency_ms_p90=None,
                latency_ms_iqr=None,
                latency_ms_cv=None,
                latency_ms_min=None,
                session_create_s=None,
                timed_s=None,
                **common,
            )
        lat = 0.5 + (int(hashlib.md5(arch.encode()).hexdigest()[:4], 16) % 100) / 50
        return Measurement(
            status=MeasurementStatus.OK,
            error=None,
            latency_ms_median=lat,
            latency_ms_mean=lat,
            latency_ms_p90=lat * 1.1,
            latency_ms_iqr=lat * 0.02,
            latency_ms_cv=0.02,
            latency_ms_min=lat * 0.98,
            session_create_s=0.002,
            timed_s=lat * s.repetitions / 1000,
            **common,
        )


def factory(**kw):
    def make(device, config, settings):
        return FakeProfiler(device, config, settings, **kw)

    return make
