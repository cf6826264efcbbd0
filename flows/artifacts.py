"""The artifact location: where ONNX files travel between the exporting host and the agents.

Files are addressed by the sha256 of their content (``onnx/<aa>/<sha256>.onnx``) and looked up by
their export key (space, architecture, model config, batch size, opset) through small JSON index
entries (``index/<sha256 of the key>.json``). Only ONNX files and JSON travel: never pickles.

The location is any fsspec URL (``file://``, ``s3://``, ``sftp://``, ...; the matching fsspec
backend must be installed) given by ``HILNAS_ARTIFACTS``, default ``<HILNAS_HOME>/artifacts``.
Every fetched file is checked against its hash before use. No torch here: agents import this.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
from hilnas.devices.errors import DataIntegrityError, PreconditionError
from hilnas.pipeline.home import home_dir, subdir

ENV_VAR = "HILNAS_ARTIFACTS"


class ArtifactError(PreconditionError, RuntimeError):
    """The artifact location cannot be used, or an artifact is missing: the message names the
    command or setting that fixes it."""


class ArtifactIntegrityError(ArtifactError, DataIntegrityError):
    """An artifact or index entry that is unreadable or does not match its hash."""


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class IndexEntry:
    key: str
    sha256: str
    meta: dict[str, Any]


class ArtifactLocation:
    """Content-addressed ONNX files plus a key -> hash index at one fsspec URL."""

    def __init__(self, url: str | os.PathLike[str] | None = None) -> None:
        url = os.fspath(url) if url is not None else os.environ.get(ENV_VAR) or None
        if url is None:
            url = str(home_dir() / "artifacts")
        self.url = url
        try:
            self.fs, self.root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:
            raise ArtifactError(
                f"artifact location {url!r} cannot be opened ({exc}); set {ENV_VAR} to a directory "
                "or an fsspec URL whose backend is installed"
            ) from None
        self.local = "file" in (
            self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        )
        try:
            self.fs.makedirs(self.root, exist_ok=True)
        except OSError as exc:
            raise ArtifactError(
                f"artifact location {url!r} cannot be created ({exc}); set {ENV_VAR} to a "
                "location both the exporting host and the agents can read"
            ) from None

    def __repr__(self) -> str:
        return f"ArtifactLocation({self.url!r})"

    # ----- paths ------------------------------------------------------------------------
    def _blob(self, sha: str) -> str:
        return f"{self.root}/onnx/{sha[:2]}/{sha}.onnx"

    def _index(self, key: str) -> str:
        return f"{self.root}/index/{hashlib.sha256(key.encode()).hexdigest()}.json"

    def _atomic_put_bytes(self, target: str, data: bytes) -> None:
        parent = target.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        tmp = f"{target}.tmp-{uuid.uuid4().hex}"
        with self.fs.open(tmp, "wb") as f:
            f.write(data)
        self.fs.mv(tmp, target)

    # ----- files ------------------------------------------------------------------------
    def put_file(self, path: Path | str) -> str:
        """Store a file under its content hash (no-op when present); return the sha256."""
        sha = sha256_file(path)
        target = self._blob(sha)
        if not self.fs.exists(target):
            self._atomic_put_bytes(target, Path(path).read_bytes())
        return sha

    def has(self, sha: str) -> bool:
        return bool(self.fs.exists(self._blob(sha)))

    def get_file(self, sha: str, cache_dir: Path | None = None) -> Path:
        """A local path holding the file with this hash, verified; raises :class:`ArtifactError`."""
        src = self._blob(sha)
        if not self.fs.exists(src):
            raise ArtifactError(
                f"ONNX file {sha[:12]}... is not in the artifact location {self.url!r}; export it "
                "on a host with the `search` extra (`hilnas run`, or the profile flow there) and "
                f"make sure both sides use the same {ENV_VAR}"
            )
        if self.local:
            local = Path(src)
        else:
            cache = cache_dir or subdir("artifact-cache")
            local = cache / f"{sha}.onnx"
            if not local.exists():
                tmp = local.with_suffix(f".tmp-{uuid.uuid4().hex}")
                self.fs.get(src, str(tmp))
                tmp.replace(local)
        actual = sha256_file(local)
        if actual != sha:
            if not self.local:
                local.unlink(missing_ok=True)
            raise ArtifactIntegrityError(
                f"ONNX file {src} does not match its hash (expected {sha[:12]}..., got "
                f"{actual[:12]}...); delete it and export it again"
            )
        return local

    # ----- index ------------------------------------------------------------------------
    def publish(self, key: str, path: Path | str, **meta: Any) -> IndexEntry:
        """Store ``path`` and record ``key -> sha256`` (with JSON-serialisable ``meta``)."""
        sha = self.put_file(path)
        entry = IndexEntry(key=key, sha256=sha, meta=meta)
        target = self._index(key)
        blob = json.dumps({"key": key, "sha256": sha, "meta": meta}, sort_keys=True).encode()
        if not self.fs.exists(target) or self.fs.cat_file(target) != blob:
            self._atomic_put_bytes(target, blob)
        return entry

    def lookup(self, key: str) -> IndexEntry | None:
        target = self._index(key)
        if not self.fs.exists(target):
            return None
        try:
            data = json.loads(self.fs.cat_file(target))
        except (OSError, ValueError) as exc:
            raise ArtifactIntegrityError(
                f"index entry {target} is unreadable ({exc}); delete it"
            ) from None
        if not isinstance(data, dict) or data.get("key") != key:
            raise ArtifactIntegrityError(f"index entry {target} belongs to another key; delete it")
        sha = data.get("sha256")
        meta = data.get("meta", {})
        if not isinstance(sha, str) or len(sha) != 64 or not isinstance(meta, dict):
            raise ArtifactIntegrityError(f"index entry {target} is malformed; delete it")
        return IndexEntry(key=key, sha256=sha, meta=meta)


# ----------------------------------------------------------------------------- exporters
class ArtifactExporter:
    """An exporter for :func:`hilnas.pipeline.profiling.profile_device` on measurement agents.

    ``export(space, arch, batch_size=, config=)`` returns the ONNX file published under the
    export's key in the artifact location (fetched by content hash and verified): it never
    builds a model, so it needs neither torch nor onnx. A model that was not published raises
    :class:`ArtifactError` naming the command that publishes it.
    """

    def __init__(self, location: ArtifactLocation | None = None, *, opset: int = 17) -> None:
        self.location = location or ArtifactLocation()
        self.opset = opset

    def __repr__(self) -> str:
        return f"ArtifactExporter({self.location.url!r}, opset={self.opset})"

    def export(self, space: Any, arch: Any, *, batch_size: int = 1, config: Any = None) -> Any:
        import time

        from hilnas.pipeline.export import ExportedModel, export_key

        t0 = time.perf_counter()
        key = export_key(space, arch, batch_size=batch_size, config=config, opset=self.opset)
        entry = self.location.lookup(key)
        if entry is None:
            raise ArtifactError(
                f"no ONNX file of {space.format(space.coerce(arch))} (batch {batch_size}, opset "
                f"{self.opset}) in the artifact location {self.location.url!r}; publish the "
                "profiling plan from a host with the `search` extra: `hilnas agent publish "
                "--archs N --seed S` (same HILNAS_ARTIFACTS)"
            )
        path = self.location.get_file(entry.sha256)
        return ExportedModel(
            path=path,
            key=key,
            sha256=entry.sha256,
            cached=True,
            export_s=time.perf_counter() - t0,
            exporter=str(entry.meta.get("exporter", "artifact")),
            opset=self.opset,
        )


def publish_plan(
    *,
    archs: int = 50,
    seed: int = 0,
    space: str = "nb201",
    batch_size: int = 1,
    opset: int = 17,
    location: ArtifactLocation | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Export a profiling plan (the reference architectures + ``archs`` sampled with ``seed``,
    as :func:`profile_device` plans it) for every workload of the space (gpt_s: prefill and
    decode, as an agent's ``jobs.profile`` measures them) and publish every file to the
    artifact location.

    Needs the exporter (torch, onnx); idempotent. Returns counts and the location's URL.
    """
    from hilnas.pipeline.export import OnnxExporter
    from hilnas.pipeline.profiling import plan_architectures, workload_configs
    from hilnas.pipeline.spaces import get_space

    loc = location or ArtifactLocation()
    sp = get_space(space)
    configs = workload_configs(sp)
    exporter = OnnxExporter(opset=opset)
    plan = plan_architectures(sp, archs, seed)
    total = len(plan) * len(configs)
    done = 0
    for cfg in configs:
        for code, _ref in plan:
            model = exporter.export(sp, code, batch_size=batch_size, config=cfg)
            loc.publish(
                model.key,
                model.path,
                space=sp.name,
                arch=sp.format(code),
                config_key=cfg.key(),
                batch_size=batch_size,
                opset=opset,
                exporter=model.exporter,
            )
            done += 1
            if progress is not None:
                progress(f"published {done}/{total} {sp.format(code)} ({cfg.key()})")
    return {"published": total, "location": loc.url, "space": sp.name, "seed": seed}
