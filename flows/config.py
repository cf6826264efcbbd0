"""Settings of the main job (`hilnas run`): one pydantic model for flags and config files.

A TOML file (``hilnas run --config FILE``) may set every key below; flags given on the command
line win over the file. Validation happens here, at the boundary: an unknown key or a bad value
raises :class:`ConfigError` naming the key, what is wrong and how to fix it. Example::

    # hilnas.toml
    archs = 50            # sampled architectures per device, besides the 10 reference ones
    reps = 30             # timed repetitions per measurement
    mode = "supernet"     # or "surrogate"
    objectives = ["error", "latency_ms"]
    points = 8            # architectures on each device's front
    run_dir = "runs/first"
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from typing import Any, Literal

from hilnas.devices.errors import InvalidInputError, NotFoundError
from hilnas.pipeline.profiling import DEFAULT_ARCHS, DEFAULT_REPS, DEFAULT_WARMUP, MAX_BATCH_SIZE
from hilnas.profilers.base import MAX_REPETITIONS, MAX_WARMUP
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10: the same parser, as a package
    import tomli as tomllib

OBJECTIVES = ("error", "latency_ms", "energy_mj")
#: Logical CPUs here: the most ONNX Runtime threads a measurement may ask for.
CPUS = os.cpu_count() or 1

#: The main job's supernet search when neither ``epochs`` nor ``[search]`` say otherwise: sized
#: so that the whole of ``hilnas run`` takes a few minutes on two CPU cores (measured and
#: quoted in flows/DEPLOYMENT.md). ``hilnas search`` keeps the search's own, longer defaults.
MAIN_JOB_SUPERNET_EPOCHS = 8
#: Further search settings of the main job (none beyond the search's defaults at present).
MAIN_JOB_SUPERNET_SEARCH: dict[str, Any] = {}


class ConfigError(InvalidInputError):
    """A config file or setting that cannot be used; the message names the key and the fix."""


class ConfigNotFoundError(ConfigError, NotFoundError):
    """The config file given does not exist."""


class RunConfig(BaseModel):
    """Everything `hilnas run` can be told (defaults: the embedded main job)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    devices: list[str] = Field(
        default_factory=list,
        description="local devices to profile (ids or aliases such as cpu, gpu0); empty = all",
    )
    archs: int = Field(
        DEFAULT_ARCHS, ge=0, le=15615, strict=True, description="sampled architectures per device"
    )
    reps: int = Field(
        DEFAULT_REPS,
        ge=1,
        le=MAX_REPETITIONS,
        strict=True,
        description="timed repetitions per measurement",
    )
    warmup: int = Field(
        DEFAULT_WARMUP,
        ge=0,
        le=MAX_WARMUP,
        strict=True,
        description="untimed warm-up runs per measurement",
    )
    threads: int = Field(
        1,
        ge=0,
        le=CPUS,
        strict=True,
        description=f"ONNX Runtime intra-op threads (0 = ORT default, at most the {CPUS} CPUs)",
    )
    batch_size: int = Field(
        1,
        ge=1,
        le=MAX_BATCH_SIZE,
        strict=True,
        description="batch size of the measured models",
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, strict=True, description="seed of sampling and search")
    space: Literal["nb201"] = Field("nb201", description="search space")
    mode: Literal["supernet", "surrogate"] = Field("supernet", description="search mode")
    objectives: list[str] = Field(
        default_factory=lambda: ["error", "latency_ms"],
        description="objectives to minimise: error, latency_ms, energy_mj (at least two)",
    )
    epochs: int | None = Field(
        None,
        ge=1,
        le=10_000,
        strict=True,
        description=f"search epochs (None: {MAIN_JOB_SUPERNET_EPOCHS} in supernet mode, the "
        "search's default in surrogate mode)",
    )
    points: int = Field(
        8, ge=2, le=200, strict=True, description="architectures on each device's front"
    )
    reference_devices: bool = Field(
        True, strict=True, description="also write fronts of the 27 reference devices"
    )
    onnx: bool = Field(
        True, strict=True, description="export the chosen subnets to ONNX in the run directory"
    )
    run_dir: Path | None = Field(None, description="run directory (default ./runs/<timestamp>)")
    search: dict[str, Any] = Field(
        default_factory=dict,
        description="further search settings (a [search] table of SearchConfig fields, e.g. "
        "accuracy_queries = 100, steps_per_epoch = 50)",
    )

    @field_validator("objectives", mode="before")
    @classmethod
    def _objectives(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            return value
        from hilnas.pipeline.objectives import parse_objectives

        try:
            return list(parse_objectives(list(dict.fromkeys(map(str, value))), "nb201"))
        except InvalidInputError as exc:
            raise ValueError(str(exc)) from None

    def search_settings(self) -> tuple[int | None, dict[str, Any]]:
        """(epochs, further SearchConfig fields) of the main job's search, defaults applied."""
        if self.mode != "supernet":
            return self.epochs, dict(self.search)
        epochs = self.epochs if self.epochs is not None else MAIN_JOB_SUPERNET_EPOCHS
        return epochs, {**MAIN_JOB_SUPERNET_SEARCH, **self.search}

    @model_validator(mode="after")
    def _search_settings(self) -> RunConfig:
        if not self.search:
            return self
        import dataclasses

        from hilnas.pipeline.search import SearchConfig

        fields = {f.name for f in dataclasses.fields(SearchConfig)}
        owned = {"mode", "objectives", "epochs", "seed", "space", "train_targets"}
        for key in self.search:
            if key in owned:
                raise ValueError(f"search.{key} is set by the top-level key {key!r}; set it there")
            if key not in fields:
                close = difflib.get_close_matches(key, sorted(fields - owned), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ValueError(
                    f"unknown search setting {key!r}; {hint}known: {', '.join(sorted(fields - owned))}"
                )
        try:
            SearchConfig(mode=self.mode, objectives=tuple(self.objectives), **self.search)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"search settings: {exc}") from None
        return self

    @field_validator("devices", mode="before")
    @classmethod
    def _devices(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value


def describe_errors(exc: ValidationError, source: str, model: type[BaseModel] | None = None) -> str:
    """Key-level messages for a failed validation of ``model`` (default :class:`RunConfig`)."""
    fields = (model or RunConfig).model_fields
    lines: list[str] = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "search"
        top = str(err["loc"][0]) if err["loc"] else "search"
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(top, list(fields), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            lines.append(f"unknown key {key!r} in {source}; {hint}valid keys: {', '.join(fields)}")
            continue
        desc = fields[top].description if top in fields else None
        msg = err["msg"].removeprefix("Value error, ")
        fix = f" ({key}: {desc})" if desc else ""
        lines.append(f"bad value for {key!r} in {source}: {msg}; got {err.get('input')!r}{fix}")
    return "; ".join(lines)


def build_config(values: dict[str, Any], source: str = "settings") -> RunConfig:
    """Validate a mapping of settings; raise :class:`ConfigError` with key-level messages."""
    try:
        return RunConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, source)) from None


def read_config_file(path: Path | str) -> dict[str, Any]:
    """The settings of a TOML config file as a mapping (not validated); a relative
    ``run_dir`` is made relative to the file. Raises :class:`ConfigError` naming the fix."""
    path = Path(path)
    if not path.exists():
        raise ConfigNotFoundError(
            f"config file {str(path)!r} does not exist; pass an existing TOML file to --config"
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {str(path)!r} ({exc.strerror or exc}); pass an existing "
            "TOML file to --config"
        ) from None
    try:
        values = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"config file {str(path)!r} is not valid TOML ({exc}); fix the syntax, e.g. "
            '`archs = 50` or `objectives = ["error", "latency_ms"]`'
        ) from None
    # Relative run directories in a file are relative to the file, not to the caller's cwd.
    if isinstance(values.get("run_dir"), str) and not Path(values["run_dir"]).is_absolute():
        values["run_dir"] = str(path.parent / values["run_dir"])
    return values


def load_config(path: Path | str, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a TOML config file, apply ``overrides`` (flags that were given), validate."""
    values = read_config_file(path)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return build_config(values, source=f"config file {str(Path(path))!r}")


def resolve_config(path: Path | str | None, overrides: dict[str, Any]) -> RunConfig:
    """Flags over file over defaults (``None`` flags count as not given)."""
    if path is not None:
        return load_config(path, overrides)
    return build_config({k: v for k, v in overrides.items() if v is not None}, source="flags")
