"""Profile one local device: export sampled subnets, measure them, store each result at once.

A :class:`ProfileRequest` is one record of what is profiled and how (device, space, plan size,
timing, workload settings; validated when built, JSON-ready for Prefect), and
:func:`profile_request` runs every workload of it: the one path behind ``hilnas profile``, the
Prefect ``profile`` flows, ``jobs.profile`` and the space flow. :func:`profile_device` is its
keyword form for one workload (a thin wrapper building a request).

The plan is the space's reference architectures (always: they form the device's hardware
embedding), then any explicitly included architectures, then ``archs`` sampled with ``seed``
(excluding the references). Keys already in the store are skipped; every other architecture is
exported (content-addressed cache), measured in the profiler's isolated worker and stored in its
own transaction before the next one starts. A run killed at any point (SIGKILL included) thus
loses at most the measurement in flight, and a rerun measures only what is missing: it never
duplicates a row (the store's unique key guarantees it even for concurrent runs).

Failed measurements (a model that crashes or hangs the runtime) are stored with their error and
are not retried unless ``retry_failed`` or ``force``. ``force`` never trades a good measurement
for a failure: when the re-measurement fails, the ok row is kept and the failed attempt is
recorded beside it (``MeasurementStore.attempts``).

Everything that can be checked beforehand is checked before the store is opened: bounds of
every size (``ProfileSettings`` and :class:`ProfileRequest`), the device, the architectures, the
packages the exporter and the profiler need (:class:`PreconditionError` naming the extra), and
that the store is not an in-memory database that would throw the results away. An export failure is not stored (it says
nothing about the device) and is retried on the next run.

Workloads: a space's configuration fields (NB201's channels and cells, GPT-S's phase, seq_len,
vocab_size, context_length) are settable from strings by :func:`workload_configs`, which also
expands a *sweep* (GPT-S: ``phase`` over prefill and decode unless one is chosen). Each
configuration is one report of :func:`profile_request`; its ``config.key()`` is part of every
measurement key, so prefill and decode of one architecture are two rows. Per-space defaults of
the plan size, repetitions and warm-up are in :data:`SPACE_PROFILE_DEFAULTS`.

Only one hilnas process measures a given device at a time (an advisory file lock under
``HILNAS_HOME/locks``), so concurrent runs do not disturb each other's timings.

Measurement quality (:mod:`hilnas.profilers.quality`, thresholds in one place,
:class:`~hilnas.profilers.quality.QualityThresholds`): every ok measurement is assessed from
the spread of its repetitions and the CPU other processes used while it ran, and stored with
its flag (``ok``, ``noisy``, ``interfered``), the reason and the evidence. A fixed *sentinel*
(the space's first reference architecture) is measured before the first model, every
``sentinel_every`` models and after the last; once a clean baseline exists, a relative change
beyond ``drift_max`` flags the models measured since the previous check as ``interfered``. At
the end of the run, flagged models are re-measured once each (at most ``max_remeasure`` per run)
when the other processes' CPU use has fallen below the bound (waiting at most
``recover_wait_s`` in all); the re-measurement replaces the row when its quality is better (or
equal with a smaller CV); otherwise the row is kept with its flag and the reason says why.
Predictors leave flagged rows out by default (:meth:`MeasurementStore.latency_table`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hilnas.devices.errors import (
    HilnasError,
    InvalidInputError,
    PreconditionError,
    UserError,
    check_number,
)
from hilnas.pipeline.home import HomeError, subdir
from hilnas.pipeline.spaces import ArchitectureError, ModelConfig, get_space
from hilnas.pipeline.store import AddResult, MeasurementKey, MeasurementStore, StoreError
from hilnas.profilers.base import EnergyMethod, MeasurementStatus, ProfileSettings
from hilnas.profilers.quality import (
    DEFAULT_THRESHOLDS,
    MeasurementQuality,
    Quality,
    QualityThresholds,
    assess,
    free_cores,
    sentinel_drift,
    usable_cores,
)
from hilnas.profilers.quality import load_1m as _load_1m

if TYPE_CHECKING:  # pragma: no cover
    from hilnas.devices.base import DeviceInfo
    from hilnas.pipeline.spaces import SearchSpace
    from hilnas.profilers.base import Measurement

log = logging.getLogger(__name__)

DEFAULT_ARCHS = 50
DEFAULT_REPS = 30
DEFAULT_WARMUP = 5  # part of the measurement key; flows/ and the CLI take their defaults from here
DEFAULT_OPSET = 17
DEFAULT_TIMEOUT_S = 120.0
MAX_BATCH_SIZE = 4096
MAX_OPSET = 25


@dataclass(frozen=True, slots=True)
class SpaceProfileDefaults:
    """What ``hilnas profile --space S`` measures when the user does not say.

    ``sweep``: a configuration field and the values a run covers by default (one
    :func:`profile_device` call each), unless the user sets that field to one value.
    """

    archs: int = DEFAULT_ARCHS
    reps: int = DEFAULT_REPS
    warmup: int = DEFAULT_WARMUP
    sweep: tuple[str, tuple[str, ...]] | None = None


#: Per-space defaults. GPT-S: 10 references + 20 sampled subnets in both phases (60 models),
#: 3 warm-up runs and 20 repetitions: measured 4.0 min wall on 2 cores shared with other jobs
#: (load ~4; prefill 180 s of which 113 s timed runs and 40 s session creation, decode 59 s of
#: which 38 s session creation), about half that on idle cores. Session creation folds the
#: in-graph weights (0.3-4 s per model); a prefill of 128 tokens runs 20-220 ms idle, a decode
#: step 5-40 ms, so 20 repetitions cost less than creating the sessions. NB201 and OFA keep
#: the project-wide defaults.
SPACE_PROFILE_DEFAULTS: dict[str, SpaceProfileDefaults] = {
    "gpt_s": SpaceProfileDefaults(
        archs=20, reps=20, warmup=3, sweep=("phase", ("prefill", "decode"))
    ),
}

#: Values of a swept field that ask for every value of the sweep (``--phase both``).
SWEEP_ALL = ("both", "all")


def profile_defaults(space: str) -> SpaceProfileDefaults:
    """The profiling defaults of a space (the project-wide ones unless it has its own)."""
    return SPACE_PROFILE_DEFAULTS.get(str(space).lower(), SpaceProfileDefaults())


def config_fields(space: SearchSpace) -> dict[str, type]:
    """The settable fields of a space's configuration and their types (from the defaults)."""
    base = space.default_model_config()
    return {f.name: type(getattr(base, f.name)) for f in dataclasses.fields(base)}  # type: ignore[arg-type]


def _convert(space: SearchSpace, name: str, value: object, kind: type) -> object:
    """A field's value from a string (``--config-set KEY=VALUE``); other values pass through."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    what = f"{space.name} setting {name}={value!r}"
    if kind is bool:
        low = text.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise InvalidInputError(f"{what} is not a boolean; use {name}=true or {name}=false")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise InvalidInputError(f"{what} is not an integer; give a whole number") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise InvalidInputError(f"{what} is not a number; give a number") from None
    return text


def workload_configs(space: SearchSpace, settings: dict[str, object] | None = None) -> list[Any]:
    """The configurations a profiling run measures, each validated by ``space.make_config``.

    ``settings`` maps configuration fields to values (strings are converted to the field's
    type). A field the space does not have raises :class:`InvalidInputError` listing the
    space's fields. The space's sweep (:data:`SPACE_PROFILE_DEFAULTS`) is expanded unless the
    swept field is set to one value; setting it to ``both``/``all`` expands it too.
    """
    fields = config_fields(space)
    given = dict(settings or {})
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise InvalidInputError(
            f"{space.name} has no workload setting {', '.join(unknown)}; its settings are "
            f"{', '.join(fields)} (e.g. --config-set {next(iter(fields))}=VALUE)"
        )
    values = {k: _convert(space, k, v, fields[k]) for k, v in given.items()}
    sweep = profile_defaults(space.name).sweep
    variants: list[dict[str, object]] = [values]
    if sweep is not None:
        name, choices = sweep
        chosen = values.get(name)
        if chosen is None or (isinstance(chosen, str) and chosen.lower() in SWEEP_ALL):
            variants = [{**values, name: c} for c in choices]
        elif chosen not in choices:
            raise InvalidInputError(
                f"unknown {space.name} {name} {chosen!r}; use one of "
                f"{', '.join(map(str, choices))} or {SWEEP_ALL[0]} (every one)"
            )
    configs = []
    for fields_of_one in variants:
        try:
            configs.append(space.make_config(**fields_of_one))
        except UserError:
            raise
        except (TypeError, ValueError) as exc:  # a field of the wrong kind
            raise InvalidInputError(
                f"{space.name} settings {fields_of_one} are invalid ({exc}); see the space's "
                "settings in `hilnas profile --help`"
            ) from exc
    return configs


# ----------------------------------------------------------------------------------------------
# the request: what is profiled and how, validated once
# ----------------------------------------------------------------------------------------------
#: Flags of a request (JSON booleans only: a string "false" is refused, not read as true).
_REQUEST_FLAGS = ("force", "retry_failed", "retry_flagged")


@dataclass(frozen=True, slots=True)
class ProfileRequest:
    """One profiling run: the device, the space, the plan and how each model is measured.

    Built by every caller (``hilnas profile``, the Prefect flows, ``jobs.profile``, the space
    flow, :func:`profile_device`) from its own inputs and run by :func:`profile_request`.
    Validated when built, before any store is opened, with the messages of the CLI options
    (``--reps``, ``--threads``...): the timing numbers by
    :class:`~hilnas.profilers.base.ProfileSettings` (their one bound check), the rest here.
    ``archs``, ``reps`` and ``warmup`` left None take the space's defaults
    (:func:`profile_defaults`) here, so a built request holds the numbers it runs with.

    ``settings``: configuration fields of the space's workload (strings are converted,
    ``--config-set`` style; :func:`workload_configs`); the space's sweep (GPT-S: prefill and
    decode) is expanded unless the swept field is set. ``include``: extra architectures
    (strings, indices or codes). JSON-ready: :meth:`to_dict` / :meth:`from_dict` round-trip
    (Prefect task parameters). The device is checked when the request runs (it is looked up
    on the host that measures).
    """

    device: str
    space: str = "nb201"
    archs: int | None = None
    reps: int | None = None
    warmup: int | None = None
    seed: int = 0
    threads: int = 1
    batch_size: int = 1
    force: bool = False
    retry_failed: bool = False
    retry_flagged: bool = False
    include: tuple[str | int | tuple[int, ...], ...] = ()
    settings: tuple[tuple[str, Any], ...] = ()
    timeout_s: float = DEFAULT_TIMEOUT_S
    strategy: str | None = None
    opset: int = DEFAULT_OPSET
    execution_provider: str | None = None

    def __post_init__(self) -> None:
        put = object.__setattr__  # frozen: normalised values are set once, here
        if not isinstance(self.device, str) or not self.device.strip():
            raise InvalidInputError(
                f"device must be a device id or alias, got {self.device!r}; see "
                "`hilnas devices list`"
            )
        sp = get_space(self.space)  # UnknownSpaceError listing the known spaces
        put(self, "space", sp.name)
        defaults = profile_defaults(sp.name)
        put(self, "archs", defaults.archs if self.archs is None else self.archs)
        put(self, "reps", defaults.reps if self.reps is None else self.reps)
        put(self, "warmup", defaults.warmup if self.warmup is None else self.warmup)
        timing = self.profile_settings()  # reps, warm-up and timeout: their one bound check
        put(self, "timeout_s", float(timing.timeout_s))
        cpus = os.cpu_count() or 1
        put(
            self,
            "threads",
            check_number(
                "threads (--threads)",
                self.threads,
                low=0,
                high=cpus,
                fix=f"this machine has {cpus} logical CPUs: use --threads from 0 (the "
                f"runtime's default) to {cpus}",
            ),
        )
        put(
            self,
            "batch_size",
            check_number(
                "batch_size (--batch-size)",
                self.batch_size,
                low=1,
                high=MAX_BATCH_SIZE,
                fix=f"use --batch-size from 1 to {MAX_BATCH_SIZE}",
            ),
        )
        most = max(sp.size() - len(sp.reference_architectures()), 0)
        put(
            self,
            "archs",
            check_number(
                "archs (--archs)",
                self.archs,
                low=0,
                high=most,
                fix=f"use --archs from 0 (the references only) to {most:,} (every other "
                f"{sp.name} architecture)",
            ),
        )
        put(
            self,
            "opset",
            check_number(
                "opset",
                self.opset,
                low=7,
                high=MAX_OPSET,
                fix=f"use an opset from 7 to {MAX_OPSET}",
            ),
        )
        put(
            self,
            "seed",
            check_number(
                "seed (--seed)",
                self.seed,
                low=0,
                high=2**32 - 1,
                fix="use --seed from 0 to 2**32-1",
            ),
        )
        if self.strategy is not None and self.strategy not in STRATEGIES:
            raise InvalidInputError(
                f"unknown strategy {self.strategy!r} (--strategy); use one of "
                f"{', '.join(STRATEGIES)}"
            )
        for name in _REQUEST_FLAGS:
            if not isinstance(getattr(self, name), bool):
                raise InvalidInputError(
                    f"{name} must be true or false, got {getattr(self, name)!r}; pass a boolean"
                )
        if self.execution_provider is not None and not (
            isinstance(self.execution_provider, str) and self.execution_provider.strip()
        ):
            raise InvalidInputError(
                f"execution_provider must be an ONNX Runtime provider name or None, got "
                f"{self.execution_provider!r}; leave it out for the device's default"
            )
        put(self, "settings", _settings_pairs(self.settings))
        workload_configs(sp, dict(self.settings))  # InvalidInputError naming the bad setting
        put(self, "include", tuple(_include_item(sp, a) for a in self.include))

    # ---- derived ------------------------------------------------------------------------------
    def search_space(self) -> SearchSpace:
        return get_space(self.space)

    def profile_settings(self) -> ProfileSettings:
        """How each model is timed (validated by :class:`ProfileSettings`)."""
        return ProfileSettings(warmup=self.warmup, repetitions=self.reps, timeout_s=self.timeout_s)  # type: ignore[arg-type]

    def workloads(self) -> list[Any]:
        """The model configurations this request measures, in order (one report each)."""
        sp = self.search_space()
        configs = workload_configs(sp, dict(self.settings))
        if not self.settings and len(configs) == 1:
            return [sp.default_model_config()]
        return configs

    @property
    def labelled(self) -> bool:
        """True when the workloads are worth naming (settings given, or a sweep)."""
        return bool(self.settings) or len(self.workloads()) > 1

    # ---- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The request as JSON-ready values (:meth:`from_dict` builds it again)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["include"] = [list(a) if isinstance(a, tuple) else a for a in self.include]
        out["settings"] = dict(self.settings)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> ProfileRequest:
        """A request from :meth:`to_dict`'s form (validated); unknown keys are refused."""
        if not isinstance(data, dict):
            raise InvalidInputError(
                f"a profile request must be a mapping of its fields, got {type(data).__name__}"
            )
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(map(str, data)) - set(names))
        if unknown:
            raise InvalidInputError(
                f"unknown profile request field(s) {', '.join(unknown)}; its fields are "
                f"{', '.join(names)}"
            )
        if "device" not in data:
            raise InvalidInputError("a profile request needs a device (e.g. device='cpu')")
        values = dict(data)
        if isinstance(values.get("include"), list):
            values["include"] = tuple(
                tuple(a) if isinstance(a, list) else a for a in values["include"]
            )
        return cls(**values)


def _settings_pairs(settings: Any) -> tuple[tuple[str, Any], ...]:
    """Workload settings as sorted ``(field, value)`` pairs (from a mapping or pairs)."""
    if isinstance(settings, dict):
        items = list(settings.items())
    else:
        try:
            items = [(k, v) for k, v in settings]
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"settings must map workload fields to values, got {settings!r}; e.g. "
                "{'phase': 'decode'}"
            ) from None
    for k, v in items:
        if not isinstance(v, (str, int, float, bool)) or (
            isinstance(v, float) and not math.isfinite(v)
        ):
            raise InvalidInputError(
                f"workload setting {k}={v!r} is not a string, number or boolean; give one value"
            )
    return tuple(sorted((str(k), v) for k, v in items))


def _include_item(sp: SearchSpace, a: Any) -> str | int | tuple[int, ...]:
    """One ``include`` entry, checked against the space and kept JSON-ready."""
    try:
        sp.coerce(a)
    except (IndexError, TypeError) as exc:  # as plan_architectures says it
        raise ArchitectureError(f"cannot measure architecture {a!r}: {exc}") from exc
    if isinstance(a, str):
        return a
    if isinstance(a, numbers.Integral):
        return int(a)
    return tuple(int(x) for x in a)


def config_settings(config: Any) -> dict[str, Any]:
    """A model configuration's fields as workload settings (``ProfileRequest.settings``)."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


class ProfilingDependencyError(PreconditionError, RuntimeError):
    """The exporter's libraries are missing (the ``search`` extra is not installed)."""


class ProfilingError(HilnasError, RuntimeError):
    """Profiling could not run (not a model fault: those are stored as failed measurements)."""


# ----------------------------------------------------------------------------------------------
# records
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ProfileRow:
    """One architecture of the plan and what happened to it in this run.

    ``outcome``: ``measured`` (stored now, ok), ``failed`` (stored now as failed, or export
    failed), ``stored`` (already in the store; values are the stored ones), ``kept`` (a forced
    re-measurement failed; the earlier ok row was kept and is what the values show, ``error``
    says what failed).
    """

    arch: str
    arch_index: int | None
    reference: bool
    outcome: str
    status: str | None
    latency_ms_median: float | None = None
    latency_ms_p90: float | None = None
    latency_ms_cv: float | None = None
    energy_mj: float | None = None
    energy_method: str | None = None
    energy_reason: str | None = None
    peak_memory_mb: float | None = None
    error: str | None = None
    export_s: float = 0.0  # this run's wall time in the exporter (cache hits are ~0)
    export_cached: bool | None = None
    onnx_bytes: int | None = None  # the exported model and its sidecar on disk
    session_create_s: float = 0.0
    warmup_s: float | None = None  # untimed warm-up runs, when the profiler reports them
    timed_s: float = 0.0
    measure_wall_s: float = 0.0  # the profiler's wall time for this model
    store_s: float = 0.0  # the store commit
    wall_s: float = 0.0  # export + measure + store, this run
    # quality of the stored ok measurement (None: failed, or stored before schema 3)
    quality: str | None = None
    quality_reason: str | None = None
    load_1m: float | None = None
    other_cpu_cores: float | None = None
    sentinel_drift: float | None = None
    remeasured: bool = False  # re-measured in this run because it was flagged

    @property
    def flagged(self) -> bool:
        return self.quality is not None and self.quality != Quality.OK.value

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["flagged"] = self.flagged
        return d


@dataclass(frozen=True, slots=True)
class SentinelCheck:
    """One measurement of the sentinel architecture: after how many models of the run, its
    median, its quality, and its drift against the baseline (None: no clean baseline yet)."""

    after: int
    median_ms: float | None
    quality: str | None
    drift: float | None
    baseline: bool = False  # this measurement became the baseline


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """Passed to the ``progress`` callback.

    ``kind``: ``plan`` (``total`` = architectures to measure, ``skipped`` = already stored),
    ``wait`` (another process is measuring this device), ``start`` (``arch`` begins),
    ``done`` (``row`` holds the outcome; ``done`` counts finished ones).
    """

    kind: str
    done: int
    total: int
    skipped: int = 0
    arch: str | None = None
    row: ProfileRow | None = None
    message: str | None = None


@dataclass
class ProfileReport:
    """What :func:`profile_device` did; ``rows`` follow the plan order (references first)."""

    device_id: str
    device_name: str
    config_key: str
    space: str
    model_config_key: str
    opset: int
    execution_provider: str
    threads: int
    batch_size: int
    warmup: int
    repetitions: int
    seed: int
    store_url: str
    planned: int = 0
    strategy: str = "random"  # how the sampled part of the plan was chosen (see STRATEGIES)
    measured: int = 0
    failed: int = 0
    skipped: int = 0
    kept: int = 0  # forced re-measurements that failed; the earlier ok rows were kept
    export_s: float = 0.0
    session_create_s: float = 0.0
    warmup_s: float = 0.0
    timed_s: float = 0.0
    measure_wall_s: float = 0.0
    store_s: float = 0.0
    wall_s: float = 0.0
    onnx_cache_bytes: int | None = None  # the whole ONNX cache after the run
    onnx_cache_bound_bytes: int | None = None  # its size bound (None: unbounded)
    # measurement quality (see the module docstring)
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS
    sentinel_arch: str | None = None
    sentinel_checks: list[SentinelCheck] = field(default_factory=list)
    sentinel_note: str | None = None  # why there was no drift check, when there was none
    remeasured: int = 0  # flagged models re-measured in this run
    remeasure_improved: int = 0  # of those, re-measurements that replaced the flagged row
    rows: list[ProfileRow] = field(default_factory=list)

    @property
    def quality_counts(self) -> dict[str, int]:
        """Ok rows of the plan per quality (``unassessed``: stored before schema 3)."""
        out: dict[str, int] = {}
        for r in self.ok_rows:
            k = r.quality or "unassessed"
            out[k] = out.get(k, 0) + 1
        return out

    @property
    def flagged(self) -> int:
        """Ok rows of the plan flagged noisy or interfered (after any re-measurement)."""
        return sum(1 for r in self.ok_rows if r.flagged)

    @property
    def max_sentinel_drift(self) -> float | None:
        drifts = [abs(c.drift) for c in self.sentinel_checks if c.drift is not None]
        return max(drifts) if drifts else None

    def quality_summary(self) -> str:
        """One line: how many were flagged and why (never silent)."""
        counts = self.quality_counts
        n_ok = len(self.ok_rows)
        if not n_ok:
            return "no ok measurements"
        parts = [f"{self.flagged} of {n_ok} flagged"]
        detail = [f"{k} {v}" for k, v in sorted(counts.items()) if k != Quality.OK.value]
        if detail:
            parts.append("(" + ", ".join(detail) + ")")
        if self.remeasured:
            parts.append(
                f"; {self.remeasured} re-measured, {self.remeasure_improved} replaced by a "
                "better measurement"
            )
        drift = self.max_sentinel_drift
        if self.sentinel_arch and drift is not None:
            parts.append(
                f"; sentinel {self.sentinel_arch}: {len(self.sentinel_checks)} checks, max drift "
                f"{100 * drift:.1f} % (bound {100 * self.thresholds.drift_max:.0f} %)"
            )
        elif self.sentinel_note:
            parts.append(f"; {self.sentinel_note}")
        elif self.sentinel_arch and self.sentinel_checks:
            parts.append(
                f"; sentinel {self.sentinel_arch}: no clean baseline in "
                f"{len(self.sentinel_checks)} checks (each was flagged), so no drift check"
            )
        return " ".join(parts).replace(" ;", ";")

    def flag_reasons(self) -> dict[str, int]:
        """Distinct kinds of reasons of the flagged rows, with counts."""
        out: dict[str, int] = {}
        for r in self.ok_rows:
            if not r.flagged or not r.quality_reason:
                continue
            for part in r.quality_reason.split("; "):
                kind = _reason_kind(part)
                out[kind] = out.get(kind, 0) + 1
        return out

    @property
    def onnx_mb_per_subnet(self) -> float | None:
        """Mean disk use of one exported subnet (model + sidecar) of this run, in MB."""
        sizes = [r.onnx_bytes for r in self.rows if r.onnx_bytes is not None]
        return sum(sizes) / len(sizes) / 2**20 if sizes else None

    @property
    def ok_rows(self) -> list[ProfileRow]:
        return [r for r in self.rows if r.status == MeasurementStatus.OK.value]

    @property
    def stored_ok(self) -> int:
        """Ok measurements of the plan now in the store (new and earlier ones)."""
        return len(self.ok_rows)

    @property
    def overhead_ratio(self) -> float | None:
        """This run's wall time over its pure timed inference time (None if nothing ran)."""
        return self.wall_s / self.timed_s if self.timed_s > 0 else None

    @property
    def energy_status(self) -> str:
        """One line: how energy of the plan's ok rows is known (never silent)."""
        rows = self.ok_rows
        if not rows:
            return "no ok measurements"
        methods: dict[str, int] = {}
        for r in rows:
            methods[r.energy_method or EnergyMethod.UNKNOWN.value] = (
                methods.get(r.energy_method or EnergyMethod.UNKNOWN.value, 0) + 1
            )
        if set(methods) == {EnergyMethod.UNKNOWN.value}:
            reasons = sorted({r.energy_reason for r in rows if r.energy_reason})
            return "unknown" + (f" ({'; '.join(reasons)})" if reasons else "")
        parts = []
        for method, n in sorted(methods.items()):
            label = {
                EnergyMethod.ESTIMATE_POWER_X_TIME.value: "estimated (power x time)",
                EnergyMethod.UNKNOWN.value: "unknown",
            }.get(method, f"measured ({method})")
            parts.append(f"{label}: {n}")
        return ", ".join(parts)

    def latency_stats(self) -> dict[str, float | None]:
        """Across the plan's ok rows: median/min/max of medians, median p90, median CV."""
        med = sorted(r.latency_ms_median for r in self.ok_rows if r.latency_ms_median is not None)
        p90 = sorted(r.latency_ms_p90 for r in self.ok_rows if r.latency_ms_p90 is not None)
        cv = sorted(r.latency_ms_cv for r in self.ok_rows if r.latency_ms_cv is not None)
        return {
            "median_of_medians_ms": _median(med),
            "min_median_ms": med[0] if med else None,
            "max_median_ms": med[-1] if med else None,
            "median_p90_ms": _median(p90),
            "median_cv": _median(cv),
            "max_cv": cv[-1] if cv else None,
        }

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "rows"}
        d.update(
            stored_ok=self.stored_ok,
            onnx_mb_per_subnet=self.onnx_mb_per_subnet,
            overhead_ratio=self.overhead_ratio,
            energy_status=self.energy_status,
            latency_stats=self.latency_stats(),
            flagged=self.flagged,
            quality_counts=self.quality_counts,
            quality_summary=self.quality_summary(),
            flag_reasons=self.flag_reasons(),
            max_sentinel_drift=self.max_sentinel_drift,
            sentinel_checks=[asdict(c) for c in self.sentinel_checks],
            thresholds=asdict(self.thresholds),
            rows=[r.to_dict() for r in self.rows],
        )
        return d


def _reason_kind(reason: str) -> str:
    """A short label of one quality reason (for counts in the summary)."""
    low = reason.lower()
    if low.startswith("other processes"):
        return "competing CPU load"
    if low.startswith("repetitions spread"):
        return "spread of repetitions"
    if low.startswith("sentinel"):
        return "sentinel drift"
    if low.startswith("re-measured"):
        return "re-measured, still flagged"
    if low.startswith("not re-measured"):
        return "not re-measured"
    return reason.split(":")[0][:40]


def _median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    n = len(values)
    mid = n // 2
    return float(values[mid]) if n % 2 else float((values[mid - 1] + values[mid]) / 2)


# ----------------------------------------------------------------------------------------------
# planning
# ----------------------------------------------------------------------------------------------
def plan_architectures(
    space: SearchSpace,
    archs: int,
    seed: int,
    include: Sequence[str | Sequence[int]] = (),
    *,
    references: bool = True,
) -> list[tuple[tuple[int, ...], bool]]:
    """``(code, is_reference)`` in plan order: references, ``include``, then ``archs`` sampled
    with ``seed`` (never a reference; the sample does not depend on ``include``).
    ``references=False`` leaves the references out of the plan (benchmarks only)."""
    if archs < 0:
        raise InvalidInputError(
            f"archs must be >= 0, got {archs}; use --archs 0 for the references only"
        )
    refs = [tuple(a) for a in space.reference_architectures()]
    extra = []
    for a in include:
        try:
            extra.append(space.coerce(a))
        except (IndexError, TypeError) as exc:
            raise ArchitectureError(f"cannot measure architecture {a!r}: {exc}") from exc
    sampled = space.sample(archs, seed=seed, exclude=refs)
    plan: list[tuple[tuple[int, ...], bool]] = []
    seen: set[tuple[int, ...]] = set()
    for code in refs if references else ():
        if code not in seen:
            seen.add(code)
            plan.append((code, True))
    for code in [*extra, *sampled]:
        if code not in seen:
            seen.add(code)
            plan.append((code, False))
    return plan


@contextmanager
def device_lock(device_id: str, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive advisory lock for measuring ``device_id`` on this host.

    Released by the kernel when the process dies (SIGKILL included). No-op where ``fcntl`` is
    missing.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in device_id)
    path = subdir("locks") / f"{safe}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock


# ----------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------
def profile_device(
    device_id: str,
    *,
    archs: int | None = None,
    reps: int | None = None,
    warmup: int | None = None,
    seed: int = 0,
    space: str = "nb201",
    threads: int = 1,
    batch_size: int = 1,
    force: bool = False,
    retry_failed: bool = False,
    retry_flagged: bool = False,
    store: MeasurementStore | str | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
    include: Sequence[str | Sequence[int]] = (),
    model_config: ModelConfig | None = None,
    opset: int = DEFAULT_OPSET,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    execution_provider: str | None = None,
    exporter: Any | None = None,
    profiler_factory: Callable[..., Any] | None = None,
    references: bool = True,
    strategy: str | None = None,
    pool_size: int | None = None,
    quality: QualityThresholds | None = None,
) -> ProfileReport:
    """Measure the plan of one workload on a local device and store each result at once.

    A thin wrapper: builds a :class:`ProfileRequest` of the keyword arguments (``model_config``
    becomes its ``settings``: one workload, the space's default when None) and runs it with
    :func:`profile_request`, which documents ``store``, ``progress``, ``exporter``,
    ``profiler_factory``, ``references``, ``pool_size`` and ``quality``. ``device_id``: a local
    device id or alias (``cpu``, ``gpu0``...). ``archs``, ``reps`` and ``warmup`` default to the
    space's (:func:`profile_defaults`). All inputs are validated before anything is written:
    ``ValueError`` (bad numbers, unknown space, malformed architecture),
    ``DeviceNotFoundError``, :class:`StoreError`.
    """
    t_start = time.perf_counter()
    request = ProfileRequest(
        device=device_id,
        space=space,
        archs=archs,
        reps=reps,
        warmup=warmup,
        seed=seed,
        threads=threads,
        batch_size=batch_size,
        force=force,
        retry_failed=retry_failed,
        retry_flagged=retry_flagged,
        include=tuple(include),
        timeout_s=timeout_s,
        strategy=strategy,
        opset=opset,
        execution_provider=execution_provider,
    )
    if model_config is not None:
        request.search_space().check_config(model_config)  # another space's configuration
    else:  # one workload: the space's default (gpt_s's settings would sweep prefill and decode)
        model_config = request.search_space().default_model_config()
    request = dataclasses.replace(request, settings=config_settings(model_config))
    (report,) = profile_request(
        request,
        store=store,
        progress=progress,
        exporter=exporter,
        profiler_factory=profiler_factory,
        references=references,
        pool_size=pool_size,
        quality=quality,
        t_start=t_start,
    )
    return report


def profile_request(
    request: ProfileRequest,
    *,
    store: MeasurementStore | str | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
    exporter: Any | None = None,
    profiler_factory: Callable[..., Any] | None = None,
    references: bool = True,
    pool_size: int | None = None,
    quality: QualityThresholds | None = None,
    on_workload: Callable[[Any], None] | None = None,
    t_start: float | None = None,
) -> list[ProfileReport]:
    """Measure every workload of ``request`` (one report each, in order; see the module).

    ``store``: a store, a database URL, or None (the default store); a store opened here is
    opened once, after every input was validated (bad input never creates or touches a
    store), and closed here. ``exporter`` (an ``OnnxExporter``) and ``profiler_factory``
    (called like ``OrtProfiler(device, config, settings)``) can be injected.
    ``references=False`` drops the reference architectures (benchmarks only: a device profiled
    so has no hardware embedding). ``pool_size`` is the active strategy's candidate pool
    (default :data:`ACTIVE_POOL`; the request's ``strategy`` None is :func:`default_strategy`,
    see :func:`plan_active`). ``quality``: the thresholds of the quality checks, the sentinel
    and the re-measurement policy (default
    :data:`~hilnas.profilers.quality.DEFAULT_THRESHOLDS`); the request's ``retry_flagged``
    re-measures stored ok rows flagged ``noisy`` or ``interfered`` (the better of the two
    measurements is kept). ``on_workload(config)`` is called before each workload starts.
    """
    t_start = time.perf_counter() if t_start is None else t_start
    if not isinstance(request, ProfileRequest):
        raise InvalidInputError(
            f"profile_request needs a ProfileRequest, got {type(request).__name__}; build one "
            "with ProfileRequest(device=..., ...) or ProfileRequest.from_dict(...)"
        )
    # ---- validate everything before touching the store (the request is validated) ------------
    sp = request.search_space()
    configs = request.workloads()
    settings = request.profile_settings()
    if quality is not None and not isinstance(quality, QualityThresholds):
        raise InvalidInputError(
            f"quality must be a QualityThresholds, got {type(quality).__name__}; build one with "
            "hilnas.profilers.quality.QualityThresholds(...)"
        )
    thresholds = quality or DEFAULT_THRESHOLDS
    pool_size = ACTIVE_POOL if pool_size is None else pool_size
    check_number("pool_size", pool_size, low=1, high=10**6, fix="use a pool of 1 to 1,000,000")
    archs, seed, include = int(request.archs or 0), request.seed, request.include  # resolved
    plan = plan_architectures(sp, archs, seed, include, references=references)

    from hilnas.devices import default_execution_provider, get_device
    from hilnas.devices.base import DeviceConfig, DeviceKind

    device: DeviceInfo = get_device(request.device)  # DeviceNotFoundError lists known ids
    if device.kind is DeviceKind.EXTERNAL:  # pragma: no cover - discovery never returns these
        raise InvalidInputError(f"{device.id} is an external device; it cannot be measured here")
    ep = request.execution_provider or default_execution_provider(device)
    dconf = DeviceConfig(device.id, ep, request.threads, request.batch_size)

    if exporter is None:
        # a missing package is known now: say so before anything is stored
        from hilnas.pipeline.export import require_export_stack

        require_export_stack()
        from hilnas.pipeline.export import cache_bound_mb

        cache_bound_mb()  # a bad HILNAS_ONNX_CACHE_MB is refused before the store is opened
    if profiler_factory is None:
        _require_profiler_stack()

    own_store = not isinstance(store, MeasurementStore)
    st = store if isinstance(store, MeasurementStore) else MeasurementStore(store)
    try:
        if own_store:
            st.require_persistent("`hilnas profile`")
    except BaseException:
        st.close()
        raise
    reports: list[ProfileReport] = []
    try:
        for cfg in configs:
            if reports:
                t_start = time.perf_counter()  # each report times its own workload
            if on_workload is not None:
                on_workload(cfg)
            chosen, workload_plan = request.strategy, plan
            if references and archs > 0 and request.strategy != "random":
                key0 = _key_template(sp, cfg, device, dconf, settings, request.opset)
                if chosen is None:
                    chosen = default_strategy(st, sp, key0)
                if chosen == "active":
                    base = plan_architectures(sp, 0, seed, include, references=references)
                    workload_plan = plan_active(
                        st, sp, key0, base, archs, seed, pool_size=pool_size, metric="latency_ms"
                    )
            report = _run(
                st,
                sp,
                cfg,
                workload_plan,
                device,
                dconf,
                settings,
                seed=seed,
                opset=request.opset,
                force=request.force,
                retry_failed=request.retry_failed,
                retry_flagged=request.retry_flagged,
                progress=progress,
                exporter=exporter,
                profiler_factory=profiler_factory,
                t_start=t_start,
                thresholds=thresholds,
            )
            report.strategy = chosen or "random"
            reports.append(report)
        return reports
    finally:
        if own_store:
            st.close()


# ----------------------------------------------------------------------------------------------
# active selection of the sampled part of the plan
# ----------------------------------------------------------------------------------------------
#: Strategies of the sampled part of the plan: ``random`` (a uniform seeded sample) or
#: ``active`` (chosen by :func:`hilnas.pipeline.predictors.learning.select_next`).
STRATEGIES: tuple[str, ...] = ("active", "random")
#: Candidates the active strategy chooses from (a seeded uniform sample of the space).
ACTIVE_POOL = 2000
#: Spaces whose default strategy is ``active`` once the references are stored: their prior is
#: shipped (NB201's meta-predictor); other spaces train one first (tens of seconds), so they
#: are active only when asked.
ACTIVE_DEFAULT_SPACES: tuple[str, ...] = ("nb201",)


def _key_template(
    sp: SearchSpace, cfg: ModelConfig, device: Any, dconf: Any, settings: Any, opset: int
) -> MeasurementKey:
    """The measurement key of this run with an empty architecture."""
    return MeasurementKey(
        space=sp.name,
        arch="",
        model_config_key=cfg.key(),
        opset=opset,
        device_id=device.id,
        execution_provider=dconf.execution_provider,
        threads=dconf.intra_op_threads,
        batch_size=dconf.batch_size,
        warmup=settings.warmup,
        repetitions=settings.repetitions,
    )


def _stored_rows(st: MeasurementStore, key: MeasurementKey) -> dict[str, Any]:
    """Arch string -> stored record with exactly ``key``'s settings (oldest first)."""
    out: dict[str, Any] = {}
    for rec in st.measurements(
        device_id=key.device_id,
        config_key=key.config_key,
        space=key.space,
        model_config_key=key.model_config_key,
    ):
        if rec.key.settings() == key.settings():
            out[rec.key.arch] = rec
    return out


def _ok_latency(rec: Any) -> float | None:
    if rec is None:
        return None
    v = rec.measurement.latency_ms_median
    ok = rec.status is MeasurementStatus.OK
    return float(v) if ok and v is not None and math.isfinite(v) and v > 0 else None


def default_strategy(st: MeasurementStore, sp: SearchSpace, key: MeasurementKey) -> str:
    """``active`` when every reference architecture of ``sp`` has an ok measurement with
    ``key``'s settings in the store and the space is in :data:`ACTIVE_DEFAULT_SPACES`, else
    ``random``."""
    if sp.name not in ACTIVE_DEFAULT_SPACES:
        return "random"
    rows = _stored_rows(st, key)
    refs = [sp.format(r) for r in sp.reference_architectures()]
    have = all(a in rows and _ok_latency(rows[a]) is not None for a in refs)
    return "active" if have else "random"


def plan_active(
    st: MeasurementStore,
    sp: SearchSpace,
    key: MeasurementKey,
    plan: list[tuple[tuple[int, ...], bool]],
    archs: int,
    seed: int,
    *,
    pool_size: int = ACTIVE_POOL,
    metric: str = "latency_ms",
) -> list[tuple[tuple[int, ...], bool]]:
    """The plan with its sampled part chosen actively.

    ``plan`` is :func:`plan_architectures`' with ``archs=0`` (the references, then the
    included architectures). ``archs`` is the number of
    non-reference architectures the device should have with ``key``'s settings: those already
    stored (ok or failed, oldest first, included ones aside) count, so a rerun resumes and a
    finished run measures nothing more (raise ``archs`` by N to measure N more). The rest are
    chosen by :func:`~hilnas.pipeline.predictors.learning.select_next` (``"active"``) from a
    seeded uniform pool of ``max(pool_size, 2 * k)`` unmeasured architectures, using a
    :class:`~hilnas.pipeline.predictors.learning.LearningPredictor` fit on the ok latencies
    the store holds. Raises PreconditionError when the references are not all stored ok.
    """
    from hilnas.pipeline.predictors.learning import learning_predictor, select_next

    rows = _stored_rows(st, key)
    refs = [tuple(r) for r in sp.reference_architectures()]
    ref_strs = [sp.format(r) for r in refs]
    missing = [a for a, r in zip(ref_strs, refs, strict=True) if _ok_latency(rows.get(a)) is None]
    if missing:
        raise PreconditionError(
            f"the active strategy needs the {len(refs)} reference architectures measured on "
            f"this device first ({len(missing)} are not); run `hilnas profile` with "
            "--strategy random (or --archs 0) first"
        )
    head = [(c, r) for c, r in plan if r]
    included = [(c, r) for c, r in plan if not r]
    taken = {c for c, _ in head} | {c for c, _ in included}
    earlier = [sp.parse(a) for a in rows if sp.parse(a) not in taken]
    keep = earlier[:archs]
    k = archs - len(keep)
    picks: list[tuple[int, ...]] = []
    if k > 0:
        measured = set(taken) | {sp.parse(a) for a in rows}
        available = sp.size() - len(measured)
        if k > available:
            raise InvalidInputError(
                f"{k} more architectures were asked for but only {available} of {sp.name} are "
                "not measured yet; ask for fewer (--archs)"
            )
        pool = sp.sample(min(max(pool_size, 2 * k), available), seed=seed, exclude=measured)
        values = [_ok_latency(rows[a]) for a in ref_strs]
        pred = learning_predictor(sp.name, values, metric=metric, network="pruned", seed=seed)
        # flagged measurements (noisy, interfered) do not steer the choice
        extra = [
            (sp.parse(a), _ok_latency(r))
            for a, r in rows.items()
            if a not in ref_strs and not getattr(r, "flagged", False)
        ]
        extra = [(c, v) for c, v in extra if v is not None]
        pred.fit([c for c, _ in extra], [v for _, v in extra])
        idx = select_next(pred, pool, k, "active", seed=seed)
        picks = [tuple(pool[int(i)]) for i in idx]
    return [*head, *included, *((c, False) for c in [*keep, *picks])]


def _run(
    st: MeasurementStore,
    sp: SearchSpace,
    cfg: ModelConfig,
    plan: list[tuple[tuple[int, ...], bool]],
    device: DeviceInfo,
    dconf: Any,
    settings: ProfileSettings,
    *,
    seed: int,
    opset: int,
    force: bool,
    retry_failed: bool,
    progress: Callable[[ProgressEvent], None] | None,
    exporter: Any | None,
    profiler_factory: Callable[..., Any] | None,
    t_start: float,
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
    retry_flagged: bool = False,
) -> ProfileReport:
    emit = progress or (lambda _e: None)
    report = ProfileReport(
        device_id=device.id,
        device_name=device.name,
        config_key=dconf.key,
        space=sp.name,
        model_config_key=cfg.key(),
        opset=opset,
        execution_provider=dconf.execution_provider,
        threads=dconf.intra_op_threads,
        batch_size=dconf.batch_size,
        warmup=settings.warmup,
        repetitions=settings.repetitions,
        seed=seed,
        store_url=st.url,
        planned=len(plan),
        thresholds=thresholds,
    )

    template = _key_template(sp, cfg, device, dconf, settings, opset)

    def key_of(code: tuple[int, ...]) -> MeasurementKey:
        return dataclasses.replace(template, arch=sp.format(code))

    st.upsert_device(device)
    try:
        lock = device_lock(
            device.id,
            on_wait=lambda: emit(
                ProgressEvent(
                    "wait",
                    0,
                    0,
                    message=f"another hilnas process is measuring {device.id}; waiting",
                )
            ),
        )
    except HomeError as exc:  # pragma: no cover - the store would have failed first
        raise StoreError(str(exc)) from exc

    rows: dict[tuple[int, ...], ProfileRow] = {}
    with lock:
        keys = {code: key_of(code) for code, _ in plan}
        stored = st.statuses(keys.values())
        flagged_before: dict[str, Any] = {}
        if retry_flagged:
            flagged_before = {a: r for a, r in _stored_rows(st, template).items() if r.flagged}
        todo: list[tuple[tuple[int, ...], bool, bool]] = []  # code, reference, replace
        for code, ref in plan:
            status = stored.get(keys[code])
            if status is None:
                todo.append((code, ref, False))
            elif force or (retry_failed and status is MeasurementStatus.FAILED):
                todo.append((code, ref, True))
            elif keys[code].arch in flagged_before:
                todo.append((code, ref, True))
        todo_codes = {c for c, _, _ in todo}
        for code, ref in plan:
            if code not in todo_codes:
                rows[code] = _stored_row(st, sp, keys[code], ref)
        report.skipped = len(rows)
        emit(ProgressEvent("plan", 0, len(todo), skipped=report.skipped))

        if todo:
            exp = exporter if exporter is not None else _default_exporter(opset)
            factory = profiler_factory if profiler_factory is not None else _default_profiler()
            with factory(device, dconf, settings) as profiler:
                judge = _Judge(thresholds, dconf.intra_op_threads, profiler)
                sentinel = _Sentinel(sp, cfg, exp, profiler, dconf.batch_size, judge, report)
                # the first check comes before the first model, or right after it when that
                # model is the sentinel itself (so that the plan's row reports its own export)
                first_is_sentinel = todo[0][0] == sentinel.code
                if not first_is_sentinel:
                    sentinel.check(0)
                since_check: list[tuple[tuple[int, ...], MeasurementQuality]] = []
                for i, (code, ref, replace) in enumerate(todo):
                    arch = sp.format(code)
                    emit(ProgressEvent("start", i, len(todo), skipped=report.skipped, arch=arch))
                    window = _StoreWindow()
                    with window:  # Ctrl-C after the commit waits for the "done" event
                        row, q = _measure_one(
                            st,
                            sp,
                            cfg,
                            code,
                            ref,
                            keys[code],
                            replace,
                            exp,
                            profiler,
                            dconf.batch_size,
                            judge,
                            keep_better=flagged_before.get(keys[code].arch),
                            before_store=window.open,
                        )
                        if keys[code].arch in flagged_before and row.status is not None:
                            report.remeasured += 1  # a retried flagged row (retry_flagged)
                            report.remeasure_improved += row.outcome == "measured"
                            row = dataclasses.replace(row, remeasured=True)
                        rows[code] = row
                        if q is not None and row.outcome in ("measured", "kept"):
                            since_check.append((code, q))
                        if row.outcome == "measured":
                            report.measured += 1
                        elif row.outcome == "failed":
                            report.failed += 1
                        elif row.outcome == "kept":
                            report.kept += 1
                        else:
                            report.skipped += 1  # a concurrent run stored it first
                        report.export_s += row.export_s
                        report.session_create_s += row.session_create_s
                        report.warmup_s += row.warmup_s or 0.0
                        report.timed_s += row.timed_s
                        report.measure_wall_s += row.measure_wall_s
                        report.store_s += row.store_s
                        emit(
                            ProgressEvent(
                                "done", i + 1, len(todo), skipped=report.skipped, arch=arch, row=row
                            )
                        )
                    every = thresholds.sentinel_every
                    if i == 0 and first_is_sentinel and row.status != MeasurementStatus.OK.value:
                        sentinel.disable(f"the sentinel {arch} failed on this device")
                    elif i == 0 and first_is_sentinel and len(todo) > 1:
                        sentinel.check(1)  # the baseline: drift is measured from here on
                        since_check = []
                    elif every and (i + 1) % every == 0 and i + 1 < len(todo):
                        drift = sentinel.check(i + 1)
                        _after_check(st, keys, rows, since_check, drift, thresholds.drift_max)
                        since_check = []
                drift = sentinel.check(len(todo))
                _after_check(st, keys, rows, since_check, drift, thresholds.drift_max)
                _remeasure_flagged(
                    st, sp, cfg, todo, keys, rows, exp, profiler, dconf.batch_size, judge, report
                )
            if hasattr(exp, "cache_size_bytes"):  # an injected exporter may have no cache
                report.onnx_cache_bytes = exp.cache_size_bytes()
                report.onnx_cache_bound_bytes = getattr(exp, "max_bytes", None)
    report.rows = [rows[code] for code, _ in plan]
    report.wall_s = time.perf_counter() - t_start
    return report


# ----------------------------------------------------------------------------------------------
# measurement quality: assessing, the sentinel, re-measuring flagged models
# ----------------------------------------------------------------------------------------------
class _Judge:
    """Assesses measurements of one run: the thresholds, the session's threads, the usable
    cores and a CPU probe (None where psutil cannot probe: then only the spread is judged)."""

    def __init__(self, thresholds: QualityThresholds, threads: int, profiler: Any = None) -> None:
        self.thresholds = thresholds
        self.threads = int(threads)
        self.cores = usable_cores()
        self._samples: list[Any] = []  # recent CPU samples, oldest first
        try:
            from hilnas.profilers.quality import CpuProbe

            # the profiler's worker process is ours: name it (listing children is slow)
            pids = (lambda: [profiler.worker_pid]) if hasattr(profiler, "worker_pid") else None
            self.probe: Any = CpuProbe(pids)
            self.sample()
        except Exception as exc:  # noqa: BLE001 - no probe only narrows the assessment
            log.warning(
                "cannot probe the CPU use of other processes (%s); only the spread of "
                "the repetitions is checked",
                exc,
            )
            self.probe = None

    @property
    def bound(self) -> float:
        """Cores other processes may use before a measurement counts as interfered."""
        t = self.thresholds
        return max(t.other_cores_min, t.other_share_max * free_cores(self.threads, self.cores))

    def sample(self) -> Any:
        """A CPU sample now (kept for :meth:`_window_start`); None without a probe."""
        if self.probe is None:
            return None
        s = self.probe.sample()
        self._samples.append(s)
        keep = 4 * self.thresholds.probe_window_s
        while len(self._samples) > 2 and s.t - self._samples[1].t > keep:
            self._samples.pop(0)
        return s

    def _window_start(self, before: Any, after: Any) -> Any:
        """The sample the other processes' CPU use is judged from: ``before`` when the
        measurement itself lasted ``probe_window_s``, else the newest earlier sample at least
        that old (or the oldest there is)."""
        window = self.thresholds.probe_window_s
        if after.t - before.t >= window:
            return before
        older = [s for s in self._samples if after.t - s.t >= window]
        if older:
            return older[-1]
        return self._samples[0] if self._samples else before

    def judge(self, m: Measurement, before: Any, after: Any) -> MeasurementQuality | None:
        if m.status is not MeasurementStatus.OK:
            return None
        other = None
        if self.probe is not None and before is not None and after is not None:
            start = self._window_start(before, after)
            shortest = self.thresholds.probe_window_s / 2
            if after.t - start.t < shortest:
                # the start of a run: too little history to judge on (the kernel counts CPU
                # time in 10 ms ticks), so the window is completed right after the model
                time.sleep(shortest - (after.t - start.t))
                after = self.sample()
            other = self.probe.other_cores(start, after)
        med = m.latency_ms_median
        spread = (
            m.latency_ms_iqr / med
            if m.latency_ms_iqr is not None and med is not None and med > 0
            else None
        )
        return assess(
            cv=m.latency_ms_cv,
            spread=spread,
            other_cpu_cores=other,
            threads=self.threads,
            cores=self.cores,
            load_1m=_load_1m(),
            thresholds=self.thresholds,
        )

    def wait_for_quiet(self, budget_s: float) -> tuple[bool, float, float | None]:
        """Sample until other processes use at most :attr:`bound` cores or ``budget_s`` is
        spent: ``(recovered, seconds waited, last reading)``."""
        if self.probe is None:
            return True, 0.0, None
        if budget_s <= 0:
            return False, 0.0, None
        t0 = time.monotonic()
        step = max(self.thresholds.recover_probe_s, 0.05)
        last = None
        while True:
            last = self.probe.other_cores_over(step)
            waited = time.monotonic() - t0
            if last is not None and last <= self.bound:
                return True, waited, last
            if waited + step > budget_s:
                return False, waited, last


def _measure_assessed(
    profiler: Any, path: Path, judge: _Judge | None
) -> tuple[Measurement, MeasurementQuality | None]:
    """Measure one model between two CPU samples; the measurement and its quality."""
    before = judge.sample() if judge is not None else None
    m: Measurement = profiler.measure(path)
    after = judge.sample() if judge is not None else None
    if m.status is not MeasurementStatus.OK and not (m.error or "").strip():
        # a failure row must say what went wrong, even when the runtime said nothing
        m = dataclasses.replace(
            m, error="the measurement failed without a message from ONNX Runtime"
        )
    q = judge.judge(m, before, after) if judge is not None else None
    return m, q


class _Sentinel:
    """The fixed architecture measured at the start, every N models and at the end of a run
    (not stored: its stored row, if any, is the plan's own). The first clean measurement is
    the baseline; the drift of every later one is relative to it."""

    def __init__(
        self,
        sp: SearchSpace,
        cfg: ModelConfig,
        exporter: Any,
        profiler: Any,
        batch_size: int,
        judge: _Judge,
        report: ProfileReport,
    ) -> None:
        self.judge = judge
        self.report = report
        self.profiler = profiler
        self.baseline: float | None = None
        self.path: Path | None = None
        self._export = lambda: exporter.export(sp, self.code, batch_size=batch_size, config=cfg)
        self.code: tuple[int, ...] | None = None
        if not judge.thresholds.sentinel_every:
            report.sentinel_note = "sentinel disabled (sentinel_every=0)"
            return
        self.code = tuple(sp.reference_architectures()[0])
        report.sentinel_arch = sp.format(self.code)

    def disable(self, why: str) -> None:
        """No more checks in this run; the report says why."""
        self.code = None
        self.path = None
        self.report.sentinel_note = f"no sentinel drift check: {why}"

    def _ensure_exported(self) -> bool:
        if self.path is None and self.code is not None:
            try:
                self.path = Path(self._export().path)
            except (ModuleNotFoundError, KeyboardInterrupt, MemoryError, UserError):
                raise
            except Exception as exc:  # noqa: BLE001 - no sentinel only narrows the checks
                self.code = None
                self.report.sentinel_note = f"no sentinel drift check: its export failed ({exc})"
                log.warning(self.report.sentinel_note)
        return self.path is not None

    def check(self, after: int) -> float | None:
        """Measure the sentinel now; its drift (None: no clean baseline, or it failed)."""
        if not self._ensure_exported():
            return None
        m, q = _measure_assessed(self.profiler, self.path, self.judge)
        if m.status is not MeasurementStatus.OK or m.latency_ms_median is None:
            self.report.sentinel_checks.append(SentinelCheck(after, None, None, None))
            self.disable(f"its measurement failed ({m.error})")  # it would fail again
            return None
        value = float(m.latency_ms_median)
        clean = q is None or not q.flagged
        if self.baseline is None:
            became = clean
            if clean:
                self.baseline = value
            self.report.sentinel_checks.append(
                SentinelCheck(after, value, q.quality.value if q else None, None, baseline=became)
            )
            return None
        drift = sentinel_drift(self.baseline, value)
        self.report.sentinel_checks.append(
            SentinelCheck(after, value, q.quality.value if q else None, drift)
        )
        return drift


def _after_check(
    st: MeasurementStore,
    keys: dict[tuple[int, ...], MeasurementKey],
    rows: dict[tuple[int, ...], ProfileRow],
    since: list[tuple[tuple[int, ...], MeasurementQuality]],
    drift: float | None,
    limit: float,
) -> None:
    """Flag the models measured since the previous sentinel check when its drift exceeds
    ``limit`` (relative)."""
    if drift is None or not since:
        return
    if abs(drift) <= limit:
        return
    for code, q in since:
        new = dataclasses.replace(
            q.flag(
                Quality.INTERFERED,
                f"sentinel drift {100 * drift:+.1f} % (bound {100 * limit:.0f} %) in its "
                "check interval: conditions changed",
            ),
            sentinel_drift=drift,
        )
        st.set_quality(keys[code], new)
        rows[code] = dataclasses.replace(rows[code], **_quality_fields(new))


def _remeasure_flagged(
    st: MeasurementStore,
    sp: SearchSpace,
    cfg: ModelConfig,
    todo: list[tuple[tuple[int, ...], bool, bool]],
    keys: dict[tuple[int, ...], MeasurementKey],
    rows: dict[tuple[int, ...], ProfileRow],
    exporter: Any,
    profiler: Any,
    batch_size: int,
    judge: _Judge,
    report: ProfileReport,
) -> None:
    """Re-measure the run's flagged models once each, at most ``max_remeasure``, once the
    other processes' CPU use is below the bound; keep the better measurement, and say in the
    reason of every flagged row that stays why it stays."""
    t = judge.thresholds
    flagged = [
        (code, ref)
        for code, ref, _ in todo
        # measured by this run and not yet re-measured in it
        if rows[code].flagged and rows[code].outcome == "measured" and not rows[code].remeasured
    ]
    budget = t.recover_wait_s
    for n, (code, ref) in enumerate(flagged):
        key = keys[code]
        old = st.get_measurement(key)
        if old is None or old.quality is None:
            continue
        old_q = _quality_of_record(old)
        if n >= t.max_remeasure:
            why = f"not re-measured: this run's {t.max_remeasure} re-measurements were used"
            _note(st, key, rows, code, old_q, why)
            continue
        recovered, waited, last = judge.wait_for_quiet(budget)
        budget = max(budget - waited, 0.0)
        if not recovered:
            seen = "" if last is None else f" (last seen {last:.2f} cores)"
            why = (
                f"not re-measured: other processes' CPU use did not fall below "
                f"{judge.bound:.2f} cores within the run's {t.recover_wait_s:g} s of waiting" + seen
            )
            _note(st, key, rows, code, old_q, why)
            continue
        try:
            exported = exporter.export(sp, code, batch_size=batch_size, config=cfg)
        except (ModuleNotFoundError, KeyboardInterrupt, MemoryError, UserError):
            raise
        except Exception as exc:  # noqa: BLE001 - the flagged row stays
            _note(st, key, rows, code, old_q, f"not re-measured: export failed ({exc})")
            continue
        m, q = _measure_assessed(profiler, Path(exported.path), judge)
        report.remeasured += 1
        if q is None:  # the re-measurement failed: the flagged ok row stays
            _note(st, key, rows, code, old_q, f"re-measured once: it failed ({m.error})")
            rows[code] = dataclasses.replace(rows[code], remeasured=True)
            continue
        if _better(q, m, old):
            if q.flagged:
                q = q.flag(Quality(q.quality), "re-measured once: still flagged, kept the better")
            st.add_measurement(
                key,
                m,
                arch_index=sp.index_or_none(code),
                onnx_sha256=getattr(exported, "sha256", None),
                exporter=getattr(exported, "exporter", None),
                export_s=getattr(exported, "export_s", None),
                force=True,
                quality=q,
            )
            report.remeasure_improved += 1
            now = _stored_row(st, sp, key, ref)
            rows[code] = dataclasses.replace(
                rows[code],
                remeasured=True,
                **{
                    f: getattr(now, f)
                    for f in (
                        "latency_ms_median",
                        "latency_ms_p90",
                        "latency_ms_cv",
                        "energy_mj",
                        "energy_method",
                        "energy_reason",
                        "peak_memory_mb",
                        *_QUALITY_ROW_FIELDS,
                    )
                },
            )
        else:
            why = f"re-measured once: still {q.quality.value} ({q.reason}), kept the first"
            _note(st, key, rows, code, old_q, why)
            rows[code] = dataclasses.replace(rows[code], remeasured=True)


_QUALITY_ROW_FIELDS = ("quality", "quality_reason", "load_1m", "other_cpu_cores", "sentinel_drift")


def _quality_of_record(rec: Any) -> MeasurementQuality:
    """The stored quality of a record (it must have been assessed)."""
    return MeasurementQuality(
        Quality(rec.quality),
        rec.quality_reason,
        rec.load_1m,
        rec.other_cpu_cores,
        rec.sentinel_drift,
    )


def _better(q: MeasurementQuality, m: Measurement, old: Any) -> bool:
    """Whether a new measurement (``q``, ``m``) beats a stored flagged record: a better quality,
    or the same with a smaller CV."""
    if old.quality is None:
        return True
    old_q = _quality_of_record(old)
    return _rank(q) < _rank(old_q) or (
        _rank(q) == _rank(old_q)
        and (m.latency_ms_cv or 0.0) < (old.measurement.latency_ms_cv or 0.0)
    )


def _rank(q: MeasurementQuality) -> int:
    return {Quality.OK: 0, Quality.NOISY: 1, Quality.INTERFERED: 2}[Quality(q.quality)]


def _note(
    st: MeasurementStore,
    key: MeasurementKey,
    rows: dict[tuple[int, ...], ProfileRow],
    code: tuple[int, ...],
    q: MeasurementQuality,
    why: str,
) -> None:
    """Append ``why`` to a flagged row's reason, in the store and in the report."""
    new = q.flag(Quality(q.quality), why)
    st.set_quality(key, new)
    rows[code] = dataclasses.replace(rows[code], **_quality_fields(new))


def _default_exporter(opset: int) -> Any:
    try:
        from hilnas.pipeline.export import OnnxExporter
    except ModuleNotFoundError as exc:
        raise ProfilingDependencyError(
            f"the ONNX exporter needs {exc.name}, which is not installed; install the search "
            'extra with `pip install "hilnas[search]"`'
        ) from exc
    return OnnxExporter(opset=opset)


def _require_profiler_stack() -> None:
    """PreconditionError naming the extra when ONNX Runtime (the profiler) is missing."""
    from hilnas.pipeline.export import importable

    if not importable("onnxruntime"):
        raise PreconditionError(
            "measuring needs onnxruntime, which this environment lacks; install it with "
            "`pip install onnxruntime` (a core dependency of hilnas; `pip install hilnas` restores it)"
        )


def _default_profiler() -> Callable[..., Any]:
    from hilnas.profilers import OrtProfiler

    return OrtProfiler


class _StoreWindow:
    """Ctrl-C between a row's commit and its progress event is held until the event is out.

    A KeyboardInterrupt there would leave a stored row that the run's count (what
    ``hilnas profile`` says it kept) never saw. :meth:`open` blocks SIGINT (main thread, where
    the platform allows it) from the moment the store is about to be written; leaving the
    ``with`` block restores the mask, and a held Ctrl-C is raised then, after the event.
    """

    def __init__(self) -> None:
        self._old: set[signal.Signals] | None = None

    def open(self) -> None:
        if (
            self._old is None
            and hasattr(signal, "pthread_sigmask")
            and threading.current_thread() is threading.main_thread()
        ):
            self._old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    def __enter__(self) -> _StoreWindow:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            old, self._old = self._old, None
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _measure_one(
    st: MeasurementStore,
    sp: SearchSpace,
    cfg: ModelConfig,
    code: tuple[int, ...],
    reference: bool,
    key: MeasurementKey,
    replace: bool,
    exporter: Any,
    profiler: Any,
    batch_size: int,
    judge: _Judge | None = None,
    keep_better: Any | None = None,
    before_store: Callable[[], None] | None = None,
) -> tuple[ProfileRow, MeasurementQuality | None]:
    """Export, measure, assess and store one model; the row and the quality that was stored
    (None for failures). ``keep_better``: the stored flagged record this re-measures; the new
    measurement replaces it only when it is better (:func:`_better`). ``before_store`` is
    called once the measurement is taken, just before the store is written
    (:class:`_StoreWindow`)."""
    t0 = time.perf_counter()
    index = sp.index_or_none(code)
    try:
        exported = exporter.export(sp, code, batch_size=batch_size, config=cfg)
    except (ModuleNotFoundError, KeyboardInterrupt, MemoryError, UserError):
        raise  # the environment (a package, the disk) must change: nothing is recorded
    except Exception as exc:  # an export bug says nothing about the device: not stored
        log.warning("export of %s failed: %s", key.arch, exc)
        return _export_failed_row(key, index, reference, exc, t0), None
    return _measured_part(
        st, sp, key, reference, replace, exported, profiler, judge, t0, index, keep_better,
        before_store,
    )  # fmt: skip


def _export_failed_row(
    key: MeasurementKey, index: int | None, reference: bool, exc: BaseException, t0: float
) -> ProfileRow:
    return ProfileRow(
        arch=key.arch,
        arch_index=index,
        reference=reference,
        outcome="failed",
        status=None,
        error=f"export failed: {type(exc).__name__}: {exc}",
        export_s=time.perf_counter() - t0,
        wall_s=time.perf_counter() - t0,
    )


def _measured_part(
    st: MeasurementStore,
    sp: SearchSpace,
    key: MeasurementKey,
    reference: bool,
    replace: bool,
    exported: Any,
    profiler: Any,
    judge: _Judge | None,
    t0: float,
    index: int | None,
    keep_better: Any | None = None,
    before_store: Callable[[], None] | None = None,
) -> tuple[ProfileRow, MeasurementQuality | None]:
    t1 = time.perf_counter()
    onnx_bytes = _entry_bytes(Path(exported.path))
    m, q = _measure_assessed(profiler, Path(exported.path), judge)
    t2 = time.perf_counter()
    if before_store is not None:
        before_store()
    if keep_better is not None and q is not None and not _better(q, m, keep_better):
        # a retried flagged row: the new measurement is no better, so the stored one stays
        old_q = _quality_of_record(keep_better)
        why = f"re-measured (retry): still {q.quality.value} ({q.reason}), kept the first"
        new = old_q.flag(Quality(old_q.quality), why)
        st.set_quality(key, new)
        kept = _stored_row(st, sp, key, reference)
        return dataclasses.replace(
            kept,
            outcome="stored",
            error=None,
            remeasured=True,
            export_s=t1 - t0,
            session_create_s=float(m.session_create_s or 0.0),
            timed_s=float(m.timed_s or 0.0),
            measure_wall_s=t2 - t1,
            wall_s=time.perf_counter() - t0,
        ), None
    details = getattr(profiler, "last_details", None)
    warmup_s = details.get("warmup_s") if isinstance(details, dict) else None
    result = st.add_measurement(
        key,
        m,
        arch_index=index,
        onnx_sha256=getattr(exported, "sha256", None),
        exporter=getattr(exported, "exporter", None),
        export_s=getattr(exported, "export_s", None),
        force=replace,
        quality=q,
    )
    ok = m.status is MeasurementStatus.OK
    if result is AddResult.EXISTS:
        outcome = "stored"
    elif result is AddResult.KEPT:
        # a forced re-measurement failed: the good row stays and is what this row shows
        kept = _stored_row(st, sp, key, reference)
        return dataclasses.replace(
            kept,
            outcome="kept",
            error=f"re-measurement failed, earlier ok measurement kept: {m.error}",
            export_s=t1 - t0,
            session_create_s=float(m.session_create_s or 0.0),
            measure_wall_s=t2 - t1,
            store_s=time.perf_counter() - t2,
            wall_s=time.perf_counter() - t0,
        ), None
    else:
        outcome = "measured" if ok else "failed"
    if result is AddResult.EXISTS:
        q = None  # a concurrent run stored it first: this quality was not stored
    return ProfileRow(
        arch=key.arch,
        arch_index=index,
        reference=reference,
        outcome=outcome,
        status=MeasurementStatus(m.status).value,
        latency_ms_median=m.latency_ms_median,
        latency_ms_p90=m.latency_ms_p90,
        latency_ms_cv=m.latency_ms_cv,
        energy_mj=m.energy_mj,
        energy_method=EnergyMethod(m.energy_method).value,
        energy_reason=m.energy_reason,
        peak_memory_mb=m.peak_memory_mb,
        error=m.error,
        export_s=t1 - t0,
        export_cached=getattr(exported, "cached", None),
        onnx_bytes=onnx_bytes,
        session_create_s=float(m.session_create_s or 0.0),
        warmup_s=float(warmup_s) if isinstance(warmup_s, (int, float)) else None,
        timed_s=float(m.timed_s or 0.0),
        measure_wall_s=t2 - t1,
        store_s=time.perf_counter() - t2,
        wall_s=time.perf_counter() - t0,
        **_quality_fields(q),
    ), q


def _quality_fields(q: MeasurementQuality | None) -> dict[str, Any]:
    if q is None:
        return {}
    return {
        "quality": Quality(q.quality).value,
        "quality_reason": q.reason,
        "load_1m": q.load_1m,
        "other_cpu_cores": q.other_cpu_cores,
        "sentinel_drift": q.sentinel_drift,
    }


def _entry_bytes(path: Path) -> int | None:
    """Bytes of an exported model and its sidecar (None when the file is not on disk)."""
    total = 0
    for p in (path, path.with_suffix(".json")):
        try:
            total += p.stat().st_size
        except OSError:
            if p == path:
                return None
    return total


def _stored_row(
    st: MeasurementStore, sp: SearchSpace, key: MeasurementKey, ref: bool
) -> ProfileRow:
    rec = st.get_measurement(key)
    m = rec.measurement if rec is not None else None
    return ProfileRow(
        arch=key.arch,
        arch_index=rec.arch_index if rec else sp.index_or_none(sp.parse(key.arch)),
        reference=ref,
        outcome="stored",
        status=m.status.value if m else None,
        latency_ms_median=m.latency_ms_median if m else None,
        latency_ms_p90=m.latency_ms_p90 if m else None,
        latency_ms_cv=m.latency_ms_cv if m else None,
        energy_mj=m.energy_mj if m else None,
        energy_method=m.energy_method.value if m else None,
        energy_reason=m.energy_reason if m else None,
        peak_memory_mb=m.peak_memory_mb if m else None,
        error=m.error if m else None,
        quality=rec.quality if rec else None,
        quality_reason=rec.quality_reason if rec else None,
        load_1m=rec.load_1m if rec else None,
        other_cpu_cores=rec.other_cpu_cores if rec else None,
        sentinel_drift=rec.sentinel_drift if rec else None,
    )


def is_finite_positive(x: float | None) -> bool:
    return x is not None and math.isfinite(x) and x > 0


__all__ = [
    "DEFAULT_ARCHS",
    "DEFAULT_REPS",
    "DEFAULT_WARMUP",
    "ArchitectureError",
    "ProfileReport",
    "ProfileRequest",
    "ProfileRow",
    "ProfilingError",
    "ProgressEvent",
    "ACTIVE_POOL",
    "SPACE_PROFILE_DEFAULTS",
    "STRATEGIES",
    "SpaceProfileDefaults",
    "config_fields",
    "config_settings",
    "default_strategy",
    "device_lock",
    "plan_active",
    "plan_architectures",
    "profile_defaults",
    "profile_device",
    "profile_request",
    "workload_configs",
]
