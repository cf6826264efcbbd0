"""OrtProfiler on real ONNX Runtime sessions of tiny models built in conftest.py.

Energy: the machine's own counters are used where they exist; "simulated RAPL" tests point the
profiler at a temp directory laid out like /sys/class/powercap (hilnas.devices.testing
.FakePowercap) whose energy_uj a thread in the test advances, so the worker process reads it.
Crash: no ONNX model that crashes this ONNX Runtime could be built (the candidates tried all
raise clean errors), so the crash test uses the worker's test hook HILNAS_PROFILER_TEST_CRASH,
which makes the worker raise SIGSEGV on itself right after creating the session; the profiler
sees exactly what a native crash inside ONNX Runtime looks like (worker killed by SIGSEGV).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest
from hilnas.devices import (
    CUDA_EP,
    DeviceConfig,
    DeviceInfo,
    DeviceKind,
    ExecutionProviderUnavailableError,
    discover,
    get_device,
)
from hilnas.devices.testing import FakePowercap
from hilnas.profilers import (
    EnergyMethod,
    InvalidModelError,
    Measurement,
    MeasurementStatus,
    OrtProfiler,
    ProfilerError,
    ProfileSettings,
    validate_onnx_file,
)
from hilnas.profilers._worker import TEST_CRASH_ENV


@pytest.fixture(scope="module")
def cpu() -> DeviceInfo:
    return get_device("cpu")


def _config(cpu: DeviceInfo, threads: int = 1, batch: int = 1) -> DeviceConfig:
    return DeviceConfig(cpu.id, "CPUExecutionProvider", threads, batch)


@pytest.fixture(scope="module")
def profiler(cpu, tmp_path_factory):
    """One persistent profiler for the module (no RAPL: an empty powercap root)."""
    root = tmp_path_factory.mktemp("no-powercap")
    with OrtProfiler(
        cpu,
        _config(cpu),
        ProfileSettings(warmup=3, repetitions=30, timeout_s=60),
        powercap_root=root,
    ) as p:
        yield p


def _assert_ok(m: Measurement) -> None:
    assert m.status is MeasurementStatus.OK, m.error
    assert m.error is None
    assert 0 < m.latency_ms_min <= m.latency_ms_median <= m.latency_ms_p90
    assert m.latency_ms_mean > 0 and m.latency_ms_iqr >= 0 and m.latency_ms_cv >= 0
    assert 0 < m.timed_s <= m.wall_s and 0 < m.session_create_s < m.wall_s


# ------------------------------------------------------------------------------------ latency
def test_statistics_and_provenance(profiler, models):
    m = profiler.measure(models.conv)
    _assert_ok(m)
    assert m.execution_provider == "CPUExecutionProvider"
    assert (m.intra_op_threads, m.batch_size, m.warmup, m.repetitions) == (1, 1, 3, 30)
    assert m.onnxruntime_version == __import__("onnxruntime").__version__
    assert m.started_at <= m.finished_at and m.started_at.endswith("+00:00")
    assert m.timed_s * 1e3 == pytest.approx(m.latency_ms_mean * 30, rel=1e-6)
    d = m.to_dict()
    assert d["status"] == "ok" and d["energy_method"] == "unknown"
    json.dumps(d)


def test_worker_is_persistent_across_models(profiler, models):
    pid = profiler.worker_pid
    starts = profiler.worker_starts
    for path in (models.matmul, models.conv, models.matmul):
        _assert_ok(profiler.measure(path))
    assert profiler.worker_pid == pid and profiler.worker_starts == starts


def test_session_options_are_honoured(cpu, models, tmp_path):
    details = {}
    for threads in (1, 3):
        with OrtProfiler(
            cpu,
            _config(cpu, threads),
            ProfileSettings(warmup=1, repetitions=3),
            powercap_root=tmp_path,
        ) as p:
            m = p.measure(models.matmul)
            _assert_ok(m)
            assert m.intra_op_threads == threads
            details[threads] = p.last_details
    for threads, d in details.items():
        assert d["intra_op_num_threads"] == threads and d["inter_op_num_threads"] == 1
        assert d["session_providers"] == ["CPUExecutionProvider"]
    # ORT's intra-op pool holds threads - 1 extra threads (the caller's thread is the first)
    grown = {t: d["threads_with_session"] - d["threads_before_session"] for t, d in details.items()}
    assert grown[3] - grown[1] == 2


def test_dynamic_batch_axis_takes_the_configured_batch(cpu, models, tmp_path):
    with OrtProfiler(
        cpu, _config(cpu, batch=4), ProfileSettings(warmup=1, repetitions=3), powercap_root=tmp_path
    ) as p:
        _assert_ok(p.measure(models.dynamic_batch))
        _assert_ok(p.measure(models.batch4))
        wrong = p.measure(models.matmul)  # batch 1 fixed in the model
    assert wrong.status is MeasurementStatus.FAILED
    assert "batch size 1" in wrong.error and "batch_size=4" in wrong.error


def test_peak_memory_is_reported_with_its_method(profiler, models):
    m = profiler.measure(models.big)  # a 64 MiB initializer
    _assert_ok(m)
    assert m.memory_method in ("vmhwm_delta", "rss_sampled_delta")
    assert m.peak_memory_mb >= 60
    small = profiler.measure(models.matmul)
    assert small.peak_memory_mb is not None and small.peak_memory_mb < m.peak_memory_mb


# ------------------------------------------------------------------------------------- energy
def test_energy_unknown_with_reason_without_a_counter(profiler, models):
    m = profiler.measure(models.matmul)
    assert m.energy_mj is None and m.energy_method is EnergyMethod.UNKNOWN
    assert "no readable RAPL powercap" in m.energy_reason


def test_energy_on_this_machine_is_measured_or_unknown_with_reason(cpu, models):
    with OrtProfiler(cpu, _config(cpu), ProfileSettings(warmup=1, repetitions=5)) as p:
        m = p.measure(models.matmul)
    _assert_ok(m)
    if cpu.energy_counter == "rapl":
        assert m.energy_method is EnergyMethod.RAPL_POWERCAP or m.energy_reason
    else:
        assert m.energy_mj is None and m.energy_method is EnergyMethod.UNKNOWN
        assert m.energy_reason == cpu.energy_unavailable_reason


class _RaplWriter(threading.Thread):
    """Advances a simulated package counter at ``rate_uj_per_s`` (wall clock, monotonic), wrapping
    at ``max_range`` once, at monotonic time ``wrap_at``."""

    def __init__(
        self, pc: FakePowercap, rate_uj_per_s: float, max_range: int, wrap_at: float
    ) -> None:
        super().__init__(daemon=True)
        self.pc, self.rate, self.max_range, self.wrap_at = pc, rate_uj_per_s, max_range, wrap_at
        self.stop = threading.Event()

    def value(self, t: float) -> int:
        return int(self.max_range + self.rate * (t - self.wrap_at)) % self.max_range

    def run(self) -> None:
        while not self.stop.is_set():
            self.pc.set(0, self.value(time.monotonic()))
            time.sleep(0.0005)


def test_simulated_rapl_energy_is_measured_across_a_wrap(cpu, models, tmp_path):
    max_range = 10**12
    rate = 20e6  # 20 W in microjoules per second
    pc = FakePowercap(tmp_path / "powercap")
    pc.add_zone(0, "package-0", energy_uj=0, max_energy_range_uj=max_range)
    settings = ProfileSettings(warmup=2, repetitions=150)  # a ~50-300 ms timed window
    with OrtProfiler(cpu, _config(cpu), settings, powercap_root=pc.root) as p:
        # a first pass tells when, relative to the request, the timed window opens and closes
        writer = _RaplWriter(pc, rate, max_range, wrap_at=time.monotonic() + 3600)
        writer.start()
        try:
            t0 = time.monotonic()
            first = p.measure(models.matmul_slow)
            w0, w1 = (x - t0 for x in p.last_details["window_monotonic"])
        finally:
            writer.stop.set()
            writer.join()
        assert first.energy_method is EnergyMethod.RAPL_POWERCAP
        for _attempt in range(3):  # the wrap must fall inside the window; retry if timing drifted
            t0 = time.monotonic()
            writer = _RaplWriter(pc, rate, max_range, wrap_at=t0 + (w0 + w1) / 2)
            writer.start()
            try:
                m = p.measure(models.matmul_slow)
            finally:
                writer.stop.set()
                writer.join()
            start, end = p.last_details["window_monotonic"]
            if start < writer.wrap_at < end:
                break
        else:
            pytest.skip(
                "could not place the simulated wrap inside the timed window (timing too noisy)"
            )
    _assert_ok(m)
    assert m.energy_method is EnergyMethod.RAPL_POWERCAP and m.energy_reason is None
    window = p.last_details["energy"]["window_s"]
    expected_mj_per_run = rate * window / 1e3 / settings.repetitions
    assert m.energy_mj == pytest.approx(expected_mj_per_run, rel=0.25)


# ------------------------------------------------------------------------------------ failures
def test_invalid_files_fail_cleanly_and_the_worker_survives(profiler, models):
    pid = profiler.worker_pid
    for bad in (models.not_onnx, models.truncated, models.empty):
        m = profiler.measure(bad)
        assert m.status is MeasurementStatus.FAILED
        assert str(bad) in m.error and "re-export" in m.error
        assert m.energy_mj is None and m.energy_method is EnergyMethod.UNKNOWN and m.energy_reason
        assert m.latency_ms_median is None and m.timed_s is None and m.wall_s > 0
    assert profiler.worker_pid == pid  # load errors need no restart
    missing = profiler.measure(models.missing)
    assert missing.status is MeasurementStatus.FAILED and "does not exist" in missing.error
    _assert_ok(profiler.measure(models.matmul))


def test_hanging_model_times_out_and_the_next_model_measures(cpu, models, tmp_path):
    with OrtProfiler(
        cpu,
        _config(cpu),
        ProfileSettings(warmup=1, repetitions=3, timeout_s=1.5),
        powercap_root=tmp_path,
    ) as p:
        pid = p.worker_pid
        t0 = time.perf_counter()
        m = p.measure(models.hang)
        elapsed = time.perf_counter() - t0
        assert m.status is MeasurementStatus.FAILED
        assert "timed out after 1.5 s" in m.error and str(models.hang) in m.error
        assert 1.5 <= m.wall_s and elapsed < 30
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert p.worker_pid is not None and p.worker_pid != pid  # restarted
        _assert_ok(p.measure(models.matmul))
        assert p.worker_starts == 2


def test_crashing_worker_is_recorded_and_the_profiler_recovers(cpu, models, tmp_path, monkeypatch):
    monkeypatch.setenv(TEST_CRASH_ENV, "crash-me-HILNAS_TEST")  # test hook, see module docstring
    with OrtProfiler(
        cpu, _config(cpu), ProfileSettings(warmup=1, repetitions=3), powercap_root=tmp_path
    ) as p:
        pid = p.worker_pid
        m = p.measure(models.crash)
        assert m.status is MeasurementStatus.FAILED
        assert "SIGSEGV" in m.error and str(models.crash) in m.error and "restarted" in m.error
        assert p.worker_pid != pid
        _assert_ok(p.measure(models.matmul))
        # and again: every crash is survived
        assert p.measure(models.crash).status is MeasurementStatus.FAILED
        _assert_ok(p.measure(models.conv))


def test_worker_killed_between_models_is_replaced(profiler, models):
    os.kill(profiler.worker_pid, 9)
    time.sleep(0.2)
    _assert_ok(profiler.measure(models.matmul))


def test_interrupted_measure_does_not_confuse_the_next_one(cpu, models, tmp_path, monkeypatch):
    with OrtProfiler(
        cpu,
        _config(cpu),
        ProfileSettings(warmup=1, repetitions=3, timeout_s=30),
        powercap_root=tmp_path,
    ) as p:
        pid = p.worker_pid
        real_receive = p._receive

        def interrupted(timeout_s):
            time.sleep(0.2)  # the worker is inside the hanging model now
            raise KeyboardInterrupt

        monkeypatch.setattr(p, "_receive", interrupted)
        with pytest.raises(KeyboardInterrupt):
            p.measure(models.hang)
        monkeypatch.setattr(p, "_receive", real_receive)
        m = p.measure(models.matmul)  # must not wait behind the hanging model
        _assert_ok(m)
        assert m.wall_s < 20 and p.worker_pid != pid


def test_killed_profiler_leaves_no_worker_behind(models, tmp_path):
    """SIGKILL the profiling process while its worker is stuck in a hanging model."""
    script = textwrap.dedent(
        f"""
        import sys, threading
        from hilnas.devices import get_device, DeviceConfig
        from hilnas.profilers import OrtProfiler, ProfileSettings
        cpu = get_device("cpu")
        p = OrtProfiler(cpu, DeviceConfig(cpu.id), ProfileSettings(timeout_s=600), powercap_root={str(tmp_path)!r})
        p.start()
        print(p.worker_pid, flush=True)
        p.measure({str(models.hang)!r})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    worker = int(proc.stdout.readline())
    time.sleep(0.5)  # the worker is inside the Loop now
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while psutil.pid_exists(worker) and time.monotonic() < deadline:
        try:
            if psutil.Process(worker).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    alive = psutil.pid_exists(worker) and psutil.Process(worker).status() != psutil.STATUS_ZOMBIE
    if alive:
        os.kill(worker, 9)
    assert not alive, "the worker outlived its profiler"


# ------------------------------------------------------------------------------------ validate
def test_validate_onnx_file(models):
    validate_onnx_file(models.matmul)
    for bad in (models.not_onnx, models.truncated, models.empty):
        with pytest.raises(InvalidModelError) as err:
            validate_onnx_file(bad)
        assert str(bad) in str(err.value) and "re-export" in str(err.value)
    with pytest.raises(InvalidModelError, match="does not exist"):
        validate_onnx_file(models.missing)
    with pytest.raises(InvalidModelError, match="not a file"):
        validate_onnx_file(models.missing.parent)
    assert issubclass(InvalidModelError, ValueError) and issubclass(
        InvalidModelError, ProfilerError
    )


# ------------------------------------------------------------------------------ configuration
def test_configuration_is_checked_up_front(cpu, tmp_path):
    with pytest.raises(ValueError, match="is for cpu-00000000"):
        OrtProfiler(cpu, DeviceConfig("cpu-00000000"), powercap_root=tmp_path)
    with pytest.raises(ValueError, match="CPUExecutionProvider"):
        OrtProfiler(cpu, DeviceConfig(cpu.id, CUDA_EP), powercap_root=tmp_path)
    external = DeviceInfo(id="titanx_1", kind=DeviceKind.EXTERNAL, name="TITAN X", fingerprint="x")
    with pytest.raises(ValueError, match="external"):
        OrtProfiler(external, DeviceConfig("titanx_1"))
    with pytest.raises(ValueError, match="--reps from 1 to"):
        ProfileSettings(repetitions=0)
    with pytest.raises(ValueError):
        ProfileSettings(timeout_s=0)


def test_gpu_without_cuda_provider_is_refused_clearly():
    import onnxruntime

    if CUDA_EP in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    gpu = DeviceInfo(
        id="gpu-0123abcd",
        kind=DeviceKind.GPU,
        name="NVIDIA Simulated",
        fingerprint="x",
        properties={"uuid": "GPU-1"},
    )
    with pytest.raises(ExecutionProviderUnavailableError, match="onnxruntime-gpu"):
        OrtProfiler(gpu, DeviceConfig(gpu.id, CUDA_EP))


def test_closed_profiler_refuses_work(cpu, models, tmp_path):
    p = OrtProfiler(cpu, _config(cpu), powercap_root=tmp_path)
    p.close()
    with pytest.raises(ProfilerError, match="closed"):
        p.measure(models.matmul)


def test_profilers_never_import_torch(models, tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        from hilnas.devices import get_device, DeviceConfig
        from hilnas.profilers import OrtProfiler, ProfileSettings
        cpu = get_device("cpu")
        with OrtProfiler(cpu, DeviceConfig(cpu.id), ProfileSettings(warmup=1, repetitions=2),
                         powercap_root={str(tmp_path)!r}) as p:
            assert p.measure({str(models.matmul)!r}).status.value == "ok"
        print("torch" in sys.modules, "onnx" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# ------------------------------------------------------------------------------- real GPU
@pytest.mark.gpu
def test_real_gpu_with_cuda_io_binding(models):
    import onnxruntime

    gpus = [d for d in discover() if d.kind is DeviceKind.GPU]
    if not gpus or CUDA_EP not in onnxruntime.get_available_providers():
        pytest.skip("needs an NVIDIA GPU and onnxruntime-gpu")
    gpu = gpus[0]
    with OrtProfiler(
        gpu, DeviceConfig(gpu.id, CUDA_EP), ProfileSettings(warmup=5, repetitions=200)
    ) as p:
        m = p.measure(models.matmul_slow)
        details = p.last_details
    _assert_ok(m)
    assert details["session_providers"][0] == CUDA_EP
    assert m.memory_method in ("nvml_process_used_delta", "nvml_device_used_delta", None)
    if gpu.energy_counter == "nvml":
        assert m.energy_method is EnergyMethod.NVML_TOTAL_ENERGY or m.energy_reason
    else:
        assert m.energy_mj is None and m.energy_reason
    assert math.isfinite(m.latency_ms_median)
