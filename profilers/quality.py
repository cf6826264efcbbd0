"""Measurement quality: detect interference while a model is timed (pure checks + a CPU probe).

A latency measured while other processes compete for the CPU is slower and, above all, less
repeatable (measured on a 2-core machine: Spearman between two profiling passes 0.9993 when
quiet, 0.895 with one competing busy process). Three signals are combined, each against a
threshold of :class:`QualityThresholds` (every threshold lives there, with its reason):

1. the spread of the timed repetitions: the coefficient of variation (``latency_ms_cv``) and
   the robust spread IQR / median; either above its bound makes the measurement ``noisy``;
2. the CPU that *other* processes used while the model was measured, in cores
   (:class:`CpuProbe`: busy time of the whole machine minus that of this process and its
   children, the profiler worker included), compared with the cores the session leaves free
   (the usable cores minus its intra-op threads); above the bound the measurement is
   ``interfered``. The 1-minute load average is recorded beside it (it lags by design, so it is
   evidence, not the test);
3. a drift check on a fixed *sentinel* architecture, measured at the start of a run, every
   ``sentinel_every`` models and at the end (:func:`sentinel_drift`): a relative change of its
   median beyond ``drift_max`` means the conditions changed, and the models measured since the
   previous check are ``interfered``.

``quality`` is ``ok``, ``noisy`` or ``interfered`` (``None`` for rows stored before schema 3 or
imported: not assessed). Nothing here imports onnxruntime or torch.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from hilnas.devices.errors import check_number

__all__ = [
    "DEFAULT_THRESHOLDS",
    "CpuProbe",
    "CpuSample",
    "MeasurementQuality",
    "Quality",
    "QualityThresholds",
    "assess",
    "flagged",
    "free_cores",
    "sentinel_drift",
    "usable_cores",
]


class Quality(str, Enum):
    """How trustworthy a measurement is (see the module docstring)."""

    OK = "ok"
    NOISY = "noisy"  # its own repetitions spread too much (no competing load was seen)
    INTERFERED = "interfered"  # other processes used the CPU, or the sentinel drifted


@dataclass(frozen=True, slots=True)
class QualityThresholds:
    """Every threshold of the quality checks and the re-measurement policy, in one place.

    - ``cv_max`` (0.5): coefficient of variation (std / mean) of the timed repetitions. A quiet
      2-core machine gives a median of 0.017-0.020 over 50 NB201 subnets, a loaded one above
      1.0 (the shipped profiling benchmark results). The CV is dominated by the size of the
      slowest runs: a single run three times slower among 30 already gives 0.34 while the
      stored median barely moves, so the bound is high and the robust spread below does most
      of the work.
    - ``spread_max`` (0.10): IQR / median of the repetitions, the robust spread: one preempted
      run inflates the CV but not this; many do, and then the median itself is uncertain.
    - ``other_cores_min`` (0.5) and ``other_share_max`` (0.5): a measurement is interfered when
      other processes used more than ``max(other_cores_min, other_share_max * free cores)``
      cores on average while it ran, free cores being the usable cores minus the session's
      intra-op threads (one competing busy process on a 2-core machine measuring with one
      thread: ~1 core against a bound of 0.5).
    - ``drift_max`` (0.05): relative change of the sentinel's median against its baseline. Two
      quiet passes differ by a median 0.46 % and at most 3.7 % per model; loaded ones by 7.6 %.
    - ``sentinel_every`` (20): models between sentinel checks (0 disables the sentinel); each
      check costs one extra measurement of a small reference architecture.
    - ``max_remeasure`` (5): flagged models re-measured once per run, at most.
    - ``recover_wait_s`` (5.0): how long, in total per run, the profiler waits for the other
      processes' CPU use to fall below the bound before re-measuring; a flagged model that is
      not re-measured is kept with its flag.
    - ``recover_probe_s`` (0.5): the length of one CPU sample while waiting.
    - ``probe_window_s`` (0.5): the shortest interval the CPU use of other processes is judged
      over. The kernel counts CPU time in clock ticks (10 ms on Linux), so a model measured in
      a few milliseconds is judged over the window ending when it finished (which then spans
      the models before it); at the start of a run, when there is less history than
      ``probe_window_s / 2``, the profiler waits for the rest of that half window after the
      model (once per run).
    """

    cv_max: float = 0.5
    spread_max: float = 0.10
    other_cores_min: float = 0.5
    other_share_max: float = 0.5
    drift_max: float = 0.05
    sentinel_every: int = 20
    max_remeasure: int = 5
    recover_wait_s: float = 5.0
    recover_probe_s: float = 0.5
    probe_window_s: float = 0.5

    def __post_init__(self) -> None:
        for name in ("cv_max", "spread_max", "other_cores_min", "other_share_max", "drift_max"):
            check_number(
                name,
                getattr(self, name),
                low=0.0,
                high=1e6,
                integer=False,
                fix=f"give {name} as a non-negative number (default "
                f"{getattr(QualityThresholds, name)})",
            )
        for name in ("sentinel_every", "max_remeasure"):
            check_number(
                name,
                getattr(self, name),
                low=0,
                high=1_000_000,
                fix=f"give {name} as a whole number >= 0 (0 disables it)",
            )
        for name in ("recover_wait_s", "recover_probe_s", "probe_window_s"):
            check_number(
                name,
                getattr(self, name),
                low=0.0,
                high=86_400.0,
                integer=False,
                fix=f"give {name} in seconds, from 0 to 86400",
            )

    def with_(self, **changes: object) -> QualityThresholds:
        """A copy with some thresholds changed (validated again)."""
        return replace(self, **changes)  # type: ignore[arg-type]


DEFAULT_THRESHOLDS = QualityThresholds()


@dataclass(frozen=True, slots=True)
class MeasurementQuality:
    """The flag of one measurement and the evidence behind it (stored with the row)."""

    quality: Quality
    reason: str | None = None
    load_1m: float | None = None  # the 1-minute load average when the measurement finished
    other_cpu_cores: float | None = None  # cores other processes used while it ran
    sentinel_drift: float | None = None  # relative sentinel change of its check interval

    @property
    def flagged(self) -> bool:
        return self.quality is not Quality.OK

    def flag(self, quality: Quality, reason: str) -> MeasurementQuality:
        """This record with a (worse) flag and the reason appended."""
        worst = quality if _rank(quality) > _rank(self.quality) else self.quality
        why = reason if not self.reason else f"{self.reason}; {reason}"
        return replace(self, quality=worst, reason=why)


def _rank(q: Quality) -> int:
    return {Quality.OK: 0, Quality.NOISY: 1, Quality.INTERFERED: 2}[Quality(q)]


def flagged(quality: str | Quality | None) -> bool:
    """Whether a stored quality value excludes the row from fitting (``None``: not assessed,
    kept)."""
    return quality is not None and Quality(quality) is not Quality.OK


def usable_cores() -> int:
    """Logical CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def free_cores(threads: int, cores: int) -> int:
    """Cores a session with ``threads`` intra-op threads leaves to others (0 threads: ONNX
    Runtime's default, one per core, so none)."""
    if threads <= 0:
        return 0
    return max(cores - threads, 0)


def assess(
    *,
    cv: float | None,
    spread: float | None = None,
    other_cpu_cores: float | None = None,
    threads: int = 1,
    cores: int | None = None,
    load_1m: float | None = None,
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
) -> MeasurementQuality:
    """The quality of one measurement from its evidence (pure: no clock, no probe).

    ``cv``: std / mean of the timed repetitions; ``spread``: IQR / median (None: not used);
    ``other_cpu_cores``: the cores other processes used meanwhile (None: not probed). Returns
    ``interfered`` when the other processes' use exceeds the bound of :class:`QualityThresholds`
    (the reason names the figures), else ``noisy`` when the repetitions spread beyond
    ``cv_max`` or ``spread_max``, else ``ok``.
    """
    t = thresholds
    cores = usable_cores() if cores is None else max(int(cores), 1)
    reasons: list[str] = []
    quality = Quality.OK
    if other_cpu_cores is not None and math.isfinite(other_cpu_cores):
        bound = max(t.other_cores_min, t.other_share_max * free_cores(threads, cores))
        if other_cpu_cores > bound:
            quality = Quality.INTERFERED
            reasons.append(
                f"other processes used {other_cpu_cores:.2f} cores while it ran (bound "
                f"{bound:.2f} of {cores} cores, {threads} thread(s) measuring)"
            )
    noisy = []
    if cv is not None and math.isfinite(cv) and cv > t.cv_max:
        noisy.append(f"CV {100 * cv:.1f} % > {100 * t.cv_max:.0f} %")
    if spread is not None and math.isfinite(spread) and spread > t.spread_max:
        noisy.append(f"IQR/median {100 * spread:.1f} % > {100 * t.spread_max:.0f} %")
    if noisy:
        if quality is Quality.OK:
            quality = Quality.NOISY
        reasons.append("repetitions spread: " + ", ".join(noisy))
    return MeasurementQuality(
        quality=quality,
        reason="; ".join(reasons) or None,
        load_1m=load_1m,
        other_cpu_cores=other_cpu_cores,
    )


def sentinel_drift(baseline_ms: float | None, value_ms: float | None) -> float | None:
    """Relative change ``(value - baseline) / baseline`` of the sentinel's median (None when
    either is missing or not positive)."""
    if baseline_ms is None or value_ms is None:
        return None
    if not (math.isfinite(baseline_ms) and math.isfinite(value_ms)) or baseline_ms <= 0:
        return None
    return (value_ms - baseline_ms) / baseline_ms


# ----------------------------------------------------------------------------------------------
# the CPU probe
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CpuSample:
    """One reading: wall clock, the machine's busy CPU seconds, and those of our processes."""

    t: float
    busy_s: float
    own_s: dict[int, float]


class CpuProbe:
    """Measures how much CPU *other* processes use, in cores, between two samples.

    Busy time of the machine comes from ``psutil.cpu_times()`` (everything but idle and iowait;
    in a container this is what the kernel reports for the host, which is what competes for
    its cores), our own from this process and its children (the profiler worker included).
    A process that appears or exits between the samples is counted as other for the part of
    its time that cannot be attributed, which errs towards flagging.
    """

    #: How often the list of our child processes is rebuilt when no ``own_pids`` are given
    #: (listing children scans every process of the machine: milliseconds on a busy one).
    CHILDREN_REFRESH_S = 2.0

    def __init__(self, own_pids: Callable[[], Iterable[int | None]] | None = None) -> None:
        """``own_pids``: returns the pids of the processes that measure for us (e.g. the
        profiler worker); without it, this process's children are listed now and then."""
        import psutil

        self._psutil = psutil
        self._me = psutil.Process()
        self._own_pids = own_pids
        self._children: list[Any] = []
        self._children_at = -math.inf
        self._procs: dict[int, Any] = {}

    def _process(self, pid: int) -> Any:
        proc = self._procs.get(pid)
        if proc is None:
            proc = self._psutil.Process(pid)
            self._procs[pid] = proc
        return proc

    def _own_processes(self) -> list[Any]:
        procs = [self._me]
        if self._own_pids is not None:
            for pid in self._own_pids():
                if pid is None or pid == self._me.pid:
                    continue
                try:
                    procs.append(self._process(int(pid)))
                except self._psutil.Error:
                    continue
            return procs
        now = time.monotonic()
        if now - self._children_at > self.CHILDREN_REFRESH_S:
            try:
                self._children = self._me.children(recursive=True)
            except self._psutil.Error:  # pragma: no cover - a race with an exiting child
                self._children = []
            self._children_at = now
        return procs + self._children

    def _own(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for p in self._own_processes():
            try:
                ct = p.cpu_times()
            except self._psutil.Error:
                continue
            out[p.pid] = float(ct.user + ct.system)
        return out

    def sample(self) -> CpuSample:
        ct = self._psutil.cpu_times()
        idle = float(ct.idle) + float(getattr(ct, "iowait", 0.0))
        total = float(sum(ct))
        # guest time is already counted in user on Linux
        total -= float(getattr(ct, "guest", 0.0)) + float(getattr(ct, "guest_nice", 0.0))
        return CpuSample(time.monotonic(), total - idle, self._own())

    @staticmethod
    def other_cores(a: CpuSample, b: CpuSample) -> float | None:
        """Mean cores used by other processes between samples ``a`` and ``b`` (None when the
        interval is too short to say)."""
        dt = b.t - a.t
        if dt <= 1e-3:
            return None
        own = sum(b.own_s[p] - a.own_s[p] for p in b.own_s if p in a.own_s)
        # our processes started meanwhile (a restarted worker): all their time is ours
        own += sum(v for p, v in b.own_s.items() if p not in a.own_s)
        other = (b.busy_s - a.busy_s) - own
        return max(other, 0.0) / dt

    def other_cores_over(self, seconds: float) -> float | None:
        """Sample, sleep ``seconds``, sample again: the other processes' cores meanwhile."""
        a = self.sample()
        time.sleep(max(seconds, 0.0))
        return self.other_cores(a, self.sample())


def load_1m() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):  # pragma: no cover - Windows
        return None


def summarise(qualities: Iterable[MeasurementQuality | None]) -> dict[str, int]:
    """Counts per quality value (``unassessed`` for None)."""
    out: dict[str, int] = {}
    for q in qualities:
        k = "unassessed" if q is None else Quality(q.quality).value
        out[k] = out.get(k, 0) + 1
    return out
