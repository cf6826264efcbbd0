"""Oracle problems for the ``ofa_mbv3`` space: supernet error and predicted GPU latency.

What :func:`ofa_problem` builds for one target (all minimised):

- ``error``: top-1 validation error (%) of the subnet with the shared weights of one trained
  OFA supernet (:class:`~hilnas.pipeline.spaces.ofa_mbv3.train.OFASupernetOracle`, the oracle
  ``hilnas search --space ofa_mbv3 --quality supernet`` trains), wrapped in a
  :class:`SupernetErrorOracle` that every problem of a benchmark shares: the error does not
  depend on the device, so an architecture is evaluated once for all targets (cached by its
  canonical code; optionally on disk, keyed by the supernet's weights and data);
- ``latency_ms``: the space's cross-device latency predictor
  (:class:`~hilnas.pipeline.predictors.space.SpacePredictor`), zero-shot from the target's
  values on the space's 10 reference architectures. :func:`latency_predictor` trains it on
  HELP's GPU configurations without the held-out ones (default ``titan_rtx_64``, MODNAS's
  test configuration), so that a held-out configuration is predicted zero-shot.

:func:`cached_supernet` trains the supernet with the given settings once and reloads it from a
cache directory afterwards, with the record of the training run (wall time, load).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from hilnas.devices.errors import InvalidInputError, NotFoundError
from hilnas.pipeline.spaces import get_space
from hilnas.pipeline.spacesearch.problem import (
    DEFAULT_BOUNDS_SAMPLES,
    OracleProblem,
    write_json_atomic,
)

__all__ = [
    "TEST_CONFIG",
    "SupernetErrorOracle",
    "cached_supernet",
    "latency_predictor",
    "ofa_problem",
]

#: MODNAS's test configuration among HELP's 9 GPU configurations.
TEST_CONFIG = "titan_rtx_64"
SUPERNET_DIR = "ofa_supernet"
TRAIN_RECORD = "train_record.json"
ERROR_CACHE_FORMAT = "hilnas.ofa_error_cache/1"


_atomic_json = write_json_atomic


# ----------------------------------------------------------------------------- error
@dataclass
class SupernetErrorOracle:
    """Supernet validation error in % per canonical architecture, evaluated once each.

    ``supernet`` is an :class:`OFASupernetOracle` (or anything with ``error(codes)`` returning
    fractions and a ``space``). ``evaluations`` counts the distinct architectures evaluated by
    the supernet in this process (cache hits are free), ``seconds`` their wall time.
    ``fingerprint`` names the weights and data (:meth:`from_supernet`); with ``cache_file``
    answers are read from and written to (:meth:`save`) that JSON file, whose fingerprint must
    match (another one is ignored, never mixed in).
    """

    supernet: Any
    fingerprint: str = ""
    cache_file: Path | None = None
    errors: dict[tuple[int, ...], float] = field(default_factory=dict)
    evaluations: int = 0
    seconds: float = 0.0
    loaded: int = 0

    def __post_init__(self) -> None:
        self.space = get_space("ofa_mbv3")
        if self.cache_file is not None:
            self.cache_file = Path(self.cache_file)
            self._read_cache()

    @classmethod
    def from_supernet(
        cls, supernet: Any, cache_dir: str | Path | None = None
    ) -> SupernetErrorOracle:
        """Wrap ``supernet``; its fingerprint is the sha256 of its weights and data. With
        ``cache_dir`` the answers persist in ``cache_dir/errors-<fingerprint>.json``."""
        fp = _supernet_fingerprint(supernet)
        path = Path(cache_dir) / f"errors-{fp[:16]}.json" if cache_dir is not None else None
        return cls(supernet, fingerprint=fp, cache_file=path)

    def _read_cache(self) -> None:
        assert self.cache_file is not None
        if not self.cache_file.is_file():
            return
        try:
            doc = json.loads(self.cache_file.read_text())
            if doc.get("format") != ERROR_CACHE_FORMAT or doc.get("fingerprint") != (
                self.fingerprint
            ):
                return
            for arch, err in doc["errors"].items():
                self.errors[self.space.parse(arch)] = float(err)
            self.loaded = len(self.errors)
        except (OSError, ValueError, KeyError, TypeError, InvalidInputError):
            self.errors.clear()  # a damaged cache is recomputed, never half-used

    def save(self) -> Path | None:
        """Write every answer to ``cache_file`` (atomically); None without a cache file."""
        if self.cache_file is None:
            return None
        doc = {
            "format": ERROR_CACHE_FORMAT,
            "fingerprint": self.fingerprint,
            "errors": {self.space.format(c): v for c, v in self.errors.items()},
        }
        _atomic_json(self.cache_file, doc)
        return self.cache_file

    def __call__(self, codes: Sequence[Sequence[int]]) -> np.ndarray:
        """Error in % of each code (canonicalised here), shape ``(len(codes),)``."""
        canon = [self.space.canonical(tuple(int(v) for v in c)) for c in codes]
        new = [c for c in dict.fromkeys(canon) if c not in self.errors]
        if new:
            t0 = time.perf_counter()
            vals = 100.0 * np.asarray(self.supernet.error(new), dtype=np.float64)
            self.seconds += time.perf_counter() - t0
            self.evaluations += len(new)
            for c, v in zip(new, vals.tolist(), strict=True):
                self.errors[c] = float(v)
        return np.array([self.errors[c] for c in canon], dtype=np.float64)

    @property
    def seconds_per_evaluation(self) -> float | None:
        return self.seconds / self.evaluations if self.evaluations else None

    def codes(self) -> np.ndarray:
        """``(n, 46)`` every architecture with a known error (this process and the cache)."""
        if not self.errors:
            return np.zeros((0, self.space.num_decisions), dtype=np.int64)
        return np.asarray(list(self.errors), dtype=np.int64)


def _supernet_fingerprint(supernet: Any) -> str:
    h = hashlib.sha256()
    state = supernet.supernet.state_dict()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    from hilnas.pipeline.spaces.ofa_mbv3.train import _data_fingerprint

    h.update(_data_fingerprint(supernet.data).encode())
    h.update(json.dumps(supernet.settings.to_json(), sort_keys=True).encode())
    return h.hexdigest()


def _load_now() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        return []


def cached_supernet(
    cache_dir: str | Path | None,
    settings: Any = None,
    *,
    data: Any = None,
    progress: Callable[[int, float], None] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The OFA supernet error oracle trained with ``settings`` (default
    :class:`OFATrainSettings()`, what ``hilnas search --space ofa_mbv3`` trains), and the record
    of its training: ``{"trained_now", "train_s", "epochs", "per_epoch_s", "load_before",
    "load_after", "date", "settings"}``.

    With ``cache_dir`` a supernet saved there with the same settings is loaded (the record is
    the one written when it was trained); otherwise it is trained here and saved there. A
    damaged cache is retrained and overwritten. ``data``: the splits (default the shipped MNIST
    sample); a cached supernet is reused only for the same data.
    """
    from hilnas.devices.errors import DataIntegrityError, PreconditionError
    from hilnas.pipeline.spaces.ofa_mbv3.train import (
        OFASupernetOracle,
        OFATrainSettings,
        train_ofa_supernet,
    )

    settings = settings or OFATrainSettings()
    directory = Path(cache_dir) / SUPERNET_DIR if cache_dir is not None else None
    if directory is not None and (directory / TRAIN_RECORD).is_file():
        try:
            record = json.loads((directory / TRAIN_RECORD).read_text())
            if record.get("settings") == settings.to_json():
                oracle = OFASupernetOracle.load(directory, data=data)
                return oracle, dict(record, trained_now=False)
        except (OSError, ValueError, DataIntegrityError, NotFoundError, PreconditionError):
            pass  # retrained below
    before = _load_now()
    t0 = time.perf_counter()
    oracle = train_ofa_supernet(settings, data=data, progress=progress)
    train_s = time.perf_counter() - t0
    record = {
        "trained_now": True,
        "train_s": round(train_s, 1),
        "epochs": settings.epochs,
        "per_epoch_s": round(train_s / settings.epochs, 1),
        "steps_per_epoch": oracle.info.get("steps_per_epoch"),
        "load_before": before,
        "load_after": _load_now(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": settings.to_json(),
    }
    if directory is not None:
        oracle.save(directory)
        _atomic_json(
            directory / TRAIN_RECORD, {k: v for k, v in record.items() if k != "trained_now"}
        )
    return oracle, record


# ----------------------------------------------------------------------------- latency
def latency_predictor(
    exclude: Sequence[str] = (TEST_CONFIG,),
    *,
    table: Any = None,
    alpha: float | None = None,
    cache_dir: str | Path | None = None,
) -> Any:
    """The ``ofa_mbv3`` latency predictor trained on HELP's GPU configurations except
    ``exclude`` (all 5,000 rows; the penalty by leave-one-configuration-out of the training
    configurations unless ``alpha`` is given). ``table`` defaults to the shipped one. With
    ``cache_dir`` it is saved as ``ofa_mbv3_latency_without_<names>.json`` and reused while the
    table is unchanged. Raises :class:`NotFoundError` for an unknown configuration and
    :class:`InvalidInputError` when fewer than two remain.
    """
    from hilnas.devices.errors import DataIntegrityError
    from hilnas.pipeline.predictors.space import fit_predictor, load_predictor, ofa_latency_table

    table = table if table is not None else ofa_latency_table()
    unknown = [d for d in exclude if d not in table.devices]
    if unknown:
        raise NotFoundError(
            f"unknown OFA configuration(s) {', '.join(unknown)}; choose from "
            f"{', '.join(table.devices)}"
        )
    train = [d for d in table.devices if d not in set(exclude)]
    if len(train) < 2:
        raise InvalidInputError(
            f"only {len(train)} configuration(s) left to train on; exclude fewer of "
            f"{', '.join(table.devices)}"
        )
    digest = hashlib.sha256(np.ascontiguousarray(table.values).tobytes()).hexdigest()
    path = None
    if cache_dir is not None:
        tag = "-".join(sorted(exclude)) or "none"
        path = Path(cache_dir) / f"ofa_mbv3_latency_without_{tag}_a{alpha}.json"
        if path.is_file():
            try:
                model = load_predictor(path, space="ofa_mbv3", metric="latency_ms")
                if (
                    model.info.get("table_sha256") == digest
                    and list(model.info.get("train_devices", [])) == train
                ):
                    return model
            except DataIntegrityError:
                pass
    model = fit_predictor(table, devices=train, alpha=alpha)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
    return model


# ----------------------------------------------------------------------------- problem
def ofa_problem(
    device: str,
    error: SupernetErrorOracle,
    predictor: Any,
    *,
    reference_values: Sequence[float] | None = None,
    bounds_samples: int = DEFAULT_BOUNDS_SAMPLES,
    bounds_seed: int = 0,
) -> OracleProblem:
    """The (error, latency_ms) problem of ``ofa_mbv3`` on ``device``.

    ``reference_values``: the device's latencies (ms) on the space's reference architectures;
    default: the shipped HELP table's values of ``device`` (:class:`NotFoundError` for a name
    that is not one of its configurations). Normalisation bounds are taken over
    ``space.sample(bounds_samples, seed=bounds_seed)``, the same architectures for every
    device, so their errors are evaluated once for all.
    """
    from hilnas.pipeline.predictors.space import arch_features, ofa_latency_table

    space = get_space("ofa_mbv3")
    if reference_values is None:
        table = ofa_latency_table()
        if device not in table.devices:
            raise NotFoundError(
                f"{device!r} is not one of HELP's OFA configurations ({', '.join(table.devices)}); "
                "pass reference_values= for another device"
            )
        ref = table.reference_values(device)
    else:
        ref = predictor.reference_values(list(reference_values))

    def latency(codes: list[tuple[int, ...]]) -> np.ndarray:
        return predictor.predict_features(arch_features(space, codes), ref)

    pred_digest = hashlib.sha256(json.dumps(predictor.to_json()).encode()).hexdigest()
    fp = hashlib.sha256(
        f"{error.fingerprint}/{pred_digest}/{np.round(ref, 9).tolist()}".encode()
    ).hexdigest()
    return OracleProblem(
        space,
        device,
        ("error", "latency_ms"),
        {"error": error, "latency_ms": latency},
        bounds_samples=bounds_samples,
        bounds_seed=bounds_seed,
        fingerprint=fp if error.fingerprint else "",
    )
