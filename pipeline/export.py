"""ONNX export of search-space subnets, content-addressed and cached on disk.

One file per (space, architecture, model config, batch size, opset, exporter version): a subnet
is never exported twice. The file name is the sha256 *key* of those fields, under
``<cache>/<key[:2]>/<key>.onnx``, with a JSON *sidecar* ``<key>.json`` beside it that records
what the file is (arch, space, config, batch, opset), the sha256 of its bytes, the exporter used
and the torch / onnx versions.

Writes are atomic: a temp file in the same directory, then ``os.replace``; the ONNX file first,
the sidecar last, so a process killed at any point (SIGKILL included) leaves either nothing, a
complete file without a sidecar (a miss: exported again), or a complete entry, and never a
partial file under a final name. A cached file whose sha256 differs from its sidecar is logged
and exported again. No fsync: the cache is derived data and the sha check catches a file that a
power loss truncated.

A space's direct builder (``space.build_onnx``) is used when it returns a model (NB201: a few ms);
otherwise ``torch.onnx.export(..., dynamo=False)`` traces ``space.build_model`` (0.2-1.5 s).
Every new export is validated with ``onnx.checker.check_model``.

The cache has a size bound (``HILNAS_ONNX_CACHE_MB``, default :data:`DEFAULT_CACHE_MB`; ``0``
disables it): after every write that takes the cache over the bound, the least recently used
entries are evicted (model and sidecar together, the sidecar first so an entry is never a
half-hit) until it fits again. "Used" is the sidecar's modification time, which a cache hit
refreshes (``noatime`` mounts make file access times useless). The entry just written is never
evicted, nor is a model whose sidecar is not yet written (its export may be in flight) unless
it is older than the stale-temp age. A GPT-S subnet is ~0.1 MB (weights computed in the
graph), an OFA MobileNetV3 subnet 10-30 MB; profiling thus never leaves gigabytes behind.

torch and onnx are imported only when a model has to be built, so :func:`load_exported` and
:func:`read_sidecar` work on a measurement agent without them.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hilnas.devices.errors import (
    DataIntegrityError,
    HilnasError,
    InvalidInputError,
    PreconditionError,
    ResourceError,
)
from hilnas.pipeline.spaces.base import ModelConfig, SearchSpace

if TYPE_CHECKING:  # pragma: no cover
    import onnx

log = logging.getLogger(__name__)

#: Name and version of this exporter; part of every cache key. Bump the version whenever the
#: bytes a given (space, arch, config, batch, opset) exports to change meaning: a change of a
#: direct builder's graph, of the fallback's settings, or of the metadata written here.
EXPORTER_NAME = "hilnas.export"
EXPORTER_VERSION = "1"
EXPORTER_ID = f"{EXPORTER_NAME}/{EXPORTER_VERSION}"

#: ``ExportedModel.exporter`` values: which path produced the file.
DIRECT = "direct"
TORCH = "torch.onnx.export"

SIDECAR_FORMAT = 1
_STALE_TEMP_S = 600.0

#: Size bound of the ONNX cache in MB unless ``HILNAS_ONNX_CACHE_MB`` says otherwise.
DEFAULT_CACHE_MB = 4096.0
CACHE_MB_ENV = "HILNAS_ONNX_CACHE_MB"
_MAX_CACHE_MB = 1e9  # a petabyte: anything larger is a typo


class ExportError(HilnasError, RuntimeError):
    """An export that failed: the message names the subnet, what went wrong and the fix."""


class ExportDependencyError(ExportError, PreconditionError):
    """torch or onnx is missing: the ``search`` extra is not installed."""


class ExportCacheFullError(ExportError, ResourceError):
    """The ONNX cache's disk is full; nothing was written under a final name."""


class ExportInputError(ExportError, InvalidInputError):
    """An export asked with invalid settings (batch size, opset)."""


class ExportCacheAccessError(ExportError, PreconditionError):
    """The ONNX cache directory cannot be created or written."""


class DamagedExportError(ExportError, DataIntegrityError):
    """A cache entry (model or sidecar) is incomplete, unreadable or does not match its hash."""


@dataclass(frozen=True, slots=True)
class ExportedModel:
    """One ONNX file in the cache.

    ``cached`` is True when the file was already there; ``export_s`` is the wall time of this
    call (the lookup and sha check for a hit; build, check and write for a new export).
    """

    path: Path
    key: str
    sha256: str
    cached: bool
    export_s: float
    exporter: str
    opset: int


# ----- keys, sidecars ------------------------------------------------------------------------


def export_key(
    space: SearchSpace,
    arch: str | int | Sequence[int],
    *,
    batch_size: int = 1,
    config: ModelConfig | None = None,
    opset: int = 17,
) -> str:
    """The content address of one export (64 hex chars)."""
    code = space.coerce(arch)
    cfg = config or space.default_model_config()
    return _key(space.name, space.format(code), cfg.key(), batch_size, opset)


def _key(space: str, arch: str, config_key: str, batch_size: int, opset: int) -> str:
    fields = {
        "space": space,
        "arch": arch,
        "config": config_key,
        "batch_size": int(batch_size),
        "opset": int(opset),
        "exporter": EXPORTER_ID,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _sidecar_path(onnx_path: Path) -> Path:
    return onnx_path.with_suffix(".json")


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The sidecar of a cached export, given the ``.onnx`` path or the ``.json`` itself.

    Raises :class:`ExportError` when it is missing or not a hilnas export sidecar.
    """
    p = Path(path)
    side = p if p.suffix == ".json" else _sidecar_path(p)
    try:
        data = json.loads(side.read_text())
    except FileNotFoundError:
        raise DamagedExportError(
            f"{side} does not exist: {p} is not a complete hilnas export (export it again with "
            "OnnxExporter.export)"
        ) from None
    except (OSError, ValueError) as exc:
        raise DamagedExportError(
            f"cannot read export sidecar {side}: {exc}; delete it and export again"
        ) from exc
    required = {"key", "sha256", "exporter", "opset", "space", "arch", "batch_size"}
    if not isinstance(data, dict) or not required <= data.keys():
        raise DamagedExportError(
            f"{side} is not a hilnas export sidecar (needs {', '.join(sorted(required))}); "
            "delete it and export again"
        )
    return data


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_exported(path: str | os.PathLike[str], *, verify: bool = True) -> ExportedModel:
    """The :class:`ExportedModel` of a cached file (``.onnx`` or its ``.json`` sidecar).

    With ``verify`` the file's sha256 is checked against the sidecar; a mismatch or a missing
    file raises :class:`ExportError`. Needs neither torch nor onnx.
    """
    t0 = time.perf_counter()
    p = Path(path)
    onnx_path = p.with_suffix(".onnx") if p.suffix == ".json" else p
    meta = read_sidecar(onnx_path)
    if not onnx_path.is_file():
        raise DamagedExportError(
            f"{onnx_path} is missing although its sidecar exists; export it again"
        )
    if verify:
        try:
            actual = file_sha256(onnx_path)
        except OSError as exc:
            raise DamagedExportError(f"cannot read {onnx_path} ({exc.strerror or exc})") from exc
        if actual != meta["sha256"]:
            raise DamagedExportError(
                f"{onnx_path} is corrupt: sha256 {actual[:12]}... differs from its sidecar's "
                f"{str(meta['sha256'])[:12]}...; delete it (OnnxExporter.export re-exports it)"
            )
    return ExportedModel(
        path=onnx_path,
        key=str(meta["key"]),
        sha256=str(meta["sha256"]),
        cached=True,
        export_s=time.perf_counter() - t0,
        exporter=str(meta["exporter"]),
        opset=int(meta["opset"]),
    )


# ----- writing ---------------------------------------------------------------------------------


def _atomic_write(path: Path, data: bytes) -> None:
    """``path`` gets ``data`` whole or not at all (temp file in the same dir + ``os.replace``)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _remove_stale_temps(directory: Path, key: str) -> None:
    """Temp files of ``key`` left by a killed writer (older than a few minutes)."""
    now = time.time()
    for tmp in directory.glob(f".{key}.*.tmp"):
        try:
            if now - tmp.stat().st_mtime > _STALE_TEMP_S:
                tmp.unlink()
        except OSError:
            pass


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("torch", "onnx"):
        try:
            out[name] = __import__(name).__version__
        except (ImportError, AttributeError):  # pragma: no cover - reported, not required
            out[name] = None
    return out


def importable(name: str) -> bool:
    """Whether ``import name`` would find the package, without importing it (torch takes
    seconds to import; a run whose models are all cached never needs it)."""
    import importlib.util
    import sys

    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require_export_stack() -> None:
    """Raise :class:`ExportDependencyError` unless torch and onnx can be imported.

    Called before a command stores anything (``hilnas profile`` checks it up front), so a
    missing extra is a precondition, not a column of failed measurements.
    """
    missing = [name for name in ("torch", "onnx") if not importable(name)]
    if missing:
        raise ExportDependencyError(
            f"exporting models needs {' and '.join(missing)}, which this environment lacks; "
            'install them with `pip install "hilnas[search]"`; a measurement agent host needs '
            "no export: run `hilnas agent publish` where the search extra is installed and "
            "serve the published models with `hilnas agent start --device cpu`"
        )


def _require_export_stack() -> None:
    """Import torch and onnx now (an export needs them next), with the same message."""
    require_export_stack()
    for name in ("torch", "onnx"):
        try:
            __import__(name)
        except ImportError as exc:
            raise ExportDependencyError(
                f"exporting models needs {name}, which cannot be imported here ({exc}); "
                'install it with `pip install "hilnas[search]"`'
            ) from exc


def _is_disk_full(exc: OSError) -> bool:
    import errno

    return exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


# ----- the size bound -------------------------------------------------------------------------


def cache_bound_mb(value: str | float | None = None) -> float | None:
    """The cache bound in MB: ``value``, else ``$HILNAS_ONNX_CACHE_MB``, else the default.

    ``0`` means no bound (None). A value that is not a number >= 0 raises
    :class:`ExportInputError` naming the variable and the fix.
    """
    raw: str | float | None = value if value is not None else os.environ.get(CACHE_MB_ENV)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return DEFAULT_CACHE_MB
    fix = (
        f"set {CACHE_MB_ENV} to a size in MB from 0 (no bound) to {_MAX_CACHE_MB:g}, e.g. "
        f"{DEFAULT_CACHE_MB:g}, or unset it"
    )
    try:
        mb = float(raw)
    except (TypeError, ValueError):
        raise ExportInputError(f"{CACHE_MB_ENV}={raw!r} is not a number; {fix}") from None
    if not (mb == mb and 0 <= mb <= _MAX_CACHE_MB):  # NaN fails the first test
        raise ExportInputError(f"{CACHE_MB_ENV}={raw!r} is out of range; {fix}")
    return None if mb == 0 else mb


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One key's files in the cache: its last use (sidecar mtime) and bytes on disk."""

    key: str
    used_at: float
    size_bytes: int
    files: tuple[Path, ...]  # the sidecar first: removing it turns the entry into a miss


def _cache_entries(cache_dir: Path) -> list[CacheEntry]:
    """Every entry under ``cache_dir`` (temp files and in-flight writes left out)."""
    by_key: dict[str, dict[str, os.stat_result]] = {}
    paths: dict[str, dict[str, Path]] = {}
    try:
        shards = [d for d in os.scandir(cache_dir) if d.is_dir(follow_symlinks=False)]
    except OSError:
        return []
    for shard in shards:
        try:
            items = list(os.scandir(shard.path))
        except OSError:
            continue
        for item in items:
            name = item.name
            if name.startswith(".") or not item.is_file(follow_symlinks=False):
                continue  # temp files of a writer: _remove_stale_temps owns them
            stem, dot, suffix = name.rpartition(".")
            if not dot or suffix not in ("onnx", "json"):
                continue
            try:
                st = item.stat(follow_symlinks=False)
            except OSError:
                continue  # removed meanwhile
            by_key.setdefault(stem, {})[suffix] = st
            paths.setdefault(stem, {})[suffix] = Path(item.path)
    now = time.time()
    out = []
    for key, stats in by_key.items():
        if "json" in stats:
            used = stats["json"].st_mtime
        elif now - stats["onnx"].st_mtime > _STALE_TEMP_S:
            used = stats["onnx"].st_mtime  # an export killed before its sidecar: an orphan
        else:
            continue  # the sidecar may be on its way: never evict a write in flight
        files = tuple(paths[key][s] for s in ("json", "onnx") if s in paths[key])
        out.append(CacheEntry(key, used, sum(s.st_size for s in stats.values()), files))
    return out


def cache_size_bytes(cache_dir: Path | str) -> int:
    """Bytes held by the cache's entries (models and sidecars)."""
    return sum(e.size_bytes for e in _cache_entries(Path(cache_dir)))


def evict_lru(cache_dir: Path | str, max_bytes: int, *, keep: Iterable[str] = ()) -> list[str]:
    """Evict least recently used entries until the cache holds at most ``max_bytes``.

    The keys in ``keep`` are never evicted (the entry just written), so the cache may stay over
    the bound when they alone exceed it. Returns the evicted keys, oldest first.
    """
    protected = set(keep)
    entries = _cache_entries(Path(cache_dir))
    total = sum(e.size_bytes for e in entries)
    evicted: list[str] = []
    for entry in sorted(entries, key=lambda e: (e.used_at, e.key)):
        if total <= max_bytes:
            break
        if entry.key in protected:
            continue
        for f in entry.files:
            try:
                f.unlink()
            except FileNotFoundError:
                pass  # another process evicted it first
            except OSError as exc:
                log.warning("cannot evict %s from the ONNX cache: %s", f, exc)
                break
        else:
            total -= entry.size_bytes
            evicted.append(entry.key)
    if evicted:
        log.info("ONNX cache over its bound: evicted %d least recently used entries", len(evicted))
    return evicted


# ----- the exporter -----------------------------------------------------------------------------


class OnnxExporter:
    """Exports subnets to a content-addressed ONNX cache (see the module docstring).

    ``cache_dir`` defaults to ``home_dir()/"onnx"`` (``HILNAS_HOME``). ``max_mb`` bounds the
    cache (LRU eviction after a write); None takes ``HILNAS_ONNX_CACHE_MB`` or the default,
    ``0`` disables the bound.
    """

    def __init__(
        self,
        *,
        cache_dir: Path | str | None = None,
        opset: int = 17,
        max_mb: float | None = None,
    ):
        if not isinstance(opset, int) or opset < 7:
            raise InvalidInputError(f"opset must be an integer >= 7, got {opset!r}")
        self.opset = opset
        bound = cache_bound_mb(max_mb)  # checked before the cache directory is created
        self.max_bytes: int | None = None if bound is None else int(bound * 1024 * 1024)
        if cache_dir is None:
            from hilnas.pipeline.home import subdir

            self.cache_dir = subdir("onnx")  # raises HomeError with the fix when unwritable
        else:
            self.cache_dir = Path(cache_dir).expanduser()
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ExportCacheAccessError(
                    f"cannot create the ONNX cache {str(self.cache_dir)!r} "
                    f"({exc.strerror or exc}); "
                    "pass a writable cache_dir or set HILNAS_HOME to a writable directory"
                ) from exc

    def __repr__(self) -> str:
        return f"OnnxExporter(cache_dir={str(self.cache_dir)!r}, opset={self.opset})"

    def cache_size_bytes(self) -> int:
        """Bytes the cache's entries hold now."""
        return cache_size_bytes(self.cache_dir)

    def evict(self, *, keep: Iterable[str] = ()) -> list[str]:
        """Apply the size bound now (see :func:`evict_lru`); a no-op without a bound."""
        if self.max_bytes is None:
            return []
        return evict_lru(self.cache_dir, self.max_bytes, keep=keep)

    # ----- addressing --------------------------------------------------------------------
    def key(
        self,
        space: SearchSpace,
        arch: str | int | Sequence[int],
        *,
        batch_size: int = 1,
        config: ModelConfig | None = None,
    ) -> str:
        return export_key(space, arch, batch_size=batch_size, config=config, opset=self.opset)

    def path_for(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.onnx"

    def lookup(
        self,
        space: SearchSpace,
        arch: str | int | Sequence[int],
        *,
        batch_size: int = 1,
        config: ModelConfig | None = None,
    ) -> ExportedModel | None:
        """The cached export if present and intact, else None (never exports)."""
        return self._lookup(self.key(space, arch, batch_size=batch_size, config=config))

    def _lookup(self, key: str) -> ExportedModel | None:
        path = self.path_for(key)
        if not path.is_file() or not _sidecar_path(path).is_file():
            return None
        try:
            hit = load_exported(path)
        except ExportError as exc:
            log.warning("ONNX cache entry %s is unusable, exporting it again: %s", key[:12], exc)
            return None
        if hit.key != key:
            log.warning(
                "ONNX cache entry %s has a sidecar of key %s; exporting again", key, hit.key
            )
            return None
        try:  # the sidecar's mtime is the entry's last use (LRU eviction)
            os.utime(_sidecar_path(path))
        except OSError:
            pass  # a read-only cache still serves hits
        return hit

    # ----- exporting ---------------------------------------------------------------------
    def export(
        self,
        space: SearchSpace,
        arch: str | int | Sequence[int],
        *,
        batch_size: int = 1,
        config: ModelConfig | None = None,
        force: bool = False,
    ) -> ExportedModel:
        """The ONNX file of one subnet: from the cache, or exported, checked and cached now.

        ``arch`` may be a string, an index or a code (``space.coerce``); a malformed one raises
        the space's ``ArchitectureError``. ``force`` re-exports even on a valid hit. Any other
        failure raises :class:`ExportError`.
        """
        t0 = time.perf_counter()
        code = space.coerce(arch)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ExportInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        cfg = config or space.default_model_config()
        arch_str = space.format(code)
        key = _key(space.name, arch_str, cfg.key(), batch_size, self.opset)
        if not force:
            hit = self._lookup(key)
            if hit is not None:
                return ExportedModel(
                    hit.path,
                    key,
                    hit.sha256,
                    True,
                    time.perf_counter() - t0,
                    hit.exporter,
                    self.opset,
                )

        what = f"{space.name} {arch_str} ({cfg.key()}, batch {batch_size}, opset {self.opset})"
        _require_export_stack()
        proto, exporter = self._build(space, code, cfg, batch_size, what)
        import onnx

        for k, v in (
            ("hilnas.space", space.name),
            ("hilnas.arch", arch_str),
            ("hilnas.config", cfg.key()),
            ("hilnas.batch_size", str(batch_size)),
            ("hilnas.exporter", f"{EXPORTER_ID} {exporter}"),
        ):
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        data = proto.SerializeToString()
        try:
            onnx.checker.check_model(data)
        except Exception as exc:  # onnx.checker.ValidationError and friends
            raise ExportError(f"the ONNX model of {what} fails onnx.checker: {exc}") from exc
        digest = hashlib.sha256(data).hexdigest()
        workload = space.workload(code, cfg, batch_size)
        path = self.path_for(key)
        export_s = time.perf_counter() - t0
        sidecar = {
            "format": SIDECAR_FORMAT,
            "key": key,
            "space": space.name,
            "arch": arch_str,
            "config": asdict(cfg),
            "config_key": cfg.key(),
            "batch_size": batch_size,
            "opset": self.opset,
            "input_name": workload.inputs[0].name,
            "input_shape": list(workload.inputs[0].shape),
            "inputs": [
                {"name": t.name, "shape": list(t.shape), "dtype": t.dtype} for t in workload.inputs
            ],
            "output_name": workload.outputs[0].name,
            "sha256": digest,
            "size_bytes": len(data),
            "exporter": exporter,
            "exporter_id": EXPORTER_ID,
            "export_s": round(export_s, 6),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": _versions(),
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale_temps(path.parent, key)
            _atomic_write(path, data)  # the model first, the sidecar (the commit mark) last
            _atomic_write(_sidecar_path(path), (json.dumps(sidecar, indent=1) + "\n").encode())
        except OSError as exc:
            if _is_disk_full(exc):
                raise ExportCacheFullError(
                    f"the ONNX cache {self.cache_dir} is full: cannot write {path.name} "
                    f"({exc.strerror or exc}; nothing was measured or stored for {arch_str}); "
                    "free disk space, then rerun the same command to resume"
                ) from exc
            raise ExportError(
                f"cannot write {path} ({exc.strerror or exc}); free disk space or point the cache "
                "(cache_dir / HILNAS_HOME) at a writable directory"
            ) from exc
        log.debug("exported %s -> %s in %.1f ms (%s)", what, path.name, export_s * 1e3, exporter)
        self.evict(keep=(key,))
        return ExportedModel(
            path, key, digest, False, time.perf_counter() - t0, exporter, self.opset
        )

    def _build(
        self,
        space: SearchSpace,
        code: tuple[int, ...],
        cfg: ModelConfig,
        batch_size: int,
        what: str,
    ) -> tuple[onnx.ModelProto, str]:
        try:
            proto = space.build_onnx(code, cfg, batch_size, self.opset)
        except Exception as exc:
            raise ExportError(f"cannot build the ONNX model of {what}: {exc}") from exc
        if proto is not None:
            return proto, DIRECT
        try:
            return _torch_export(space, code, cfg, batch_size, self.opset), TORCH
        except Exception as exc:
            raise ExportError(f"torch.onnx.export failed for {what}: {exc}") from exc

    def export_many(
        self,
        space: SearchSpace,
        archs: Iterable[str | int | Sequence[int]],
        *,
        batch_size: int = 1,
        config: ModelConfig | None = None,
        progress: Callable[[int, int, ExportedModel], None] | None = None,
    ) -> list[ExportedModel]:
        """:meth:`export` for each architecture, in order; ``progress(done, total, model)``."""
        items = list(archs)
        out: list[ExportedModel] = []
        for i, arch in enumerate(items):
            out.append(self.export(space, arch, batch_size=batch_size, config=config))
            if progress is not None:
                progress(i + 1, len(items), out[-1])
        return out


def _torch_export(
    space: SearchSpace, code: tuple[int, ...], cfg: ModelConfig, batch_size: int, opset: int
) -> onnx.ModelProto:
    """Trace ``space.build_model`` with the TorchScript exporter (the fallback path)."""
    import onnx
    import torch

    model = space.build_model(code, cfg).eval()
    workload = space.workload(code, cfg, batch_size)
    dummies = tuple(torch.from_numpy(a) for a in workload.zeros().values())
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            dummies,
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=[t.name for t in workload.inputs],
            output_names=[t.name for t in workload.outputs],
            do_constant_folding=True,
        )
    return onnx.load_from_string(buf.getvalue())


__all__ = [
    "DIRECT",
    "EXPORTER_ID",
    "TORCH",
    "ExportError",
    "CACHE_MB_ENV",
    "DEFAULT_CACHE_MB",
    "CacheEntry",
    "ExportedModel",
    "OnnxExporter",
    "cache_bound_mb",
    "cache_size_bytes",
    "evict_lru",
    "export_key",
    "file_sha256",
    "load_exported",
    "read_sidecar",
]
