"""Targets and the tables predictors fit on (:class:`_TargetsMixin`): resolving a target
name (a configuration key, an imported device, a device with one configuration), the
latency and energy tables of a target with the quality filter, and what that filter left
out."""

from __future__ import annotations

from typing import Any

from hilnas.pipeline.store.engine import log
from hilnas.pipeline.store.errors import TargetNotFoundError
from hilnas.pipeline.store.records import FLAGGED_KEEP, QualityExclusions
from hilnas.pipeline.store.rows import _arch_parses, _space
from hilnas.pipeline.store.schema import external_table, measurements_table
from hilnas.profilers.base import EnergyMethod, MeasurementStatus
from sqlalchemy import literal_column, select


class _TargetsMixin:
    """What predictors and the search consume: targets and their fit tables."""

    _has_quality: bool

    # ----- targets (what predictors and the search consume) --------------------------------
    def targets(self) -> list[str]:
        """Every configuration key with ok measurements, then every external device name."""
        return self.config_keys(ok_only=True) + [d.name for d in self.external_devices()]

    def resolve_target(self, name: str) -> str:
        """A config key, an external device name, or a device id with exactly one configuration
        (ok measurements) -> the config key / external name; :class:`TargetNotFoundError` else."""
        configs = self.config_keys(ok_only=True)
        if name in configs:
            return name
        externals = [d.name for d in self.external_devices()]
        if name in externals:
            return name
        own = self.config_keys(name, ok_only=True)
        if len(own) == 1:
            return own[0]
        if len(own) > 1:
            raise TargetNotFoundError(
                f"device {name!r} has {len(own)} measured configurations ({', '.join(own)}); "
                "name one of them as the target"
            )
        choices = configs + externals
        raise TargetNotFoundError(
            f"no target {name!r} in the store {self.display_url}; known targets: "
            f"{', '.join(choices) if choices else 'none yet'}. Measure a device with "
            "`hilnas profile --device ID` or import one with "
            "`hilnas devices import NAME --csv FILE`"
        )

    def latency_table(
        self,
        target: str,
        space: str = "nb201",
        *,
        model_config_key: str | None = None,
        include_flagged: bool = False,
    ) -> dict[str, float]:
        """Arch string -> median latency (ms) of ok measurements of a target.

        For a device configuration, rows of ``model_config_key`` (default: the space's default
        model config) are used; when an architecture was measured under several settings
        (warm-up, repetitions, opset) the most recent row wins. Rows flagged ``noisy`` or
        ``interfered`` are left out unless ``include_flagged`` (rows of the space's reference
        architectures are always kept: the device's embedding needs them);
        :meth:`quality_exclusions` says how many were left out.
        """
        return self._table(target, space, "latency", model_config_key, include_flagged)[0]

    def energy_table(
        self,
        target: str,
        space: str = "nb201",
        *,
        model_config_key: str | None = None,
        include_flagged: bool = False,
    ) -> dict[str, float]:
        """Arch string -> measured energy per inference (mJ); unknown and estimated values are
        left out (never mixed with measured ones), flagged rows as in :meth:`latency_table`."""
        return self._table(target, space, "energy", model_config_key, include_flagged)[0]

    def quality_exclusions(
        self,
        target: str,
        space: str = "nb201",
        metric: str = "latency_ms",
        *,
        model_config_key: str | None = None,
    ) -> QualityExclusions:
        """What the default quality filter leaves out of :meth:`latency_table` (``metric``
        ``latency_ms``) or :meth:`energy_table` (``energy_mj``) of a target."""
        what = "latency" if metric == "latency_ms" else "energy"
        return self._table(target, space, what, model_config_key, False)[1]

    def _table(
        self,
        target: str,
        space: str,
        what: str,
        model_config_key: str | None,
        include_flagged: bool = False,
    ) -> tuple[dict[str, float], QualityExclusions]:
        resolved = self.resolve_target(target)
        with self._read() as conn:
            if "/" not in resolved:  # external device
                e = external_table.c
                col = e.latency_ms if what == "latency" else e.energy_mj
                rows = conn.execute(
                    select(e.arch, col).where(
                        e.device_name == resolved, e.space == space, col.is_not(None)
                    )
                ).all()
            else:
                rows = None
            if rows is not None:
                good = {a: float(v) for a, v in rows if _arch_parses(space, a)}
                if len(good) < len(rows):
                    self._warn_damaged(len(rows) - len(good), f"imported {what} values")
                return good, QualityExclusions()
            t = measurements_table.c
            mck = model_config_key or _space(space).default_model_config().key()
            col = t.latency_ms_median if what == "latency" else t.energy_mj
            conds = [
                t.config_key == resolved,
                t.space == space,
                t.model_config_key == mck,
                t.status == MeasurementStatus.OK.value,
                col.is_not(None),
            ]
            if what == "energy":
                conds.append(
                    t.energy_method.not_in(
                        [EnergyMethod.UNKNOWN.value, EnergyMethod.ESTIMATE_POWER_X_TIME.value]
                    )
                )
            quality = t.quality if self._has_quality else literal_column("NULL")
            rows = conn.execute(
                select(t.arch, col, quality).where(*conds).order_by(t.created_at, t.id)
            ).all()
        refs: set[str] = set()
        if not include_flagged and any(q not in (None, "ok") for _, _, q in rows):
            refs = set(_space(space).reference_strings())
        kept: list[tuple[str, Any]] = []
        excluded: dict[str, int] = {}
        kept_refs = kept_flagged = 0
        if not include_flagged and refs:
            extra = [q for a, _, q in rows if a not in refs]
            flagged = sum(q not in (None, "ok") for q in extra)
            if extra and flagged > FLAGGED_KEEP * len(extra):
                include_flagged, kept_flagged = True, flagged  # the majority: keep them all
        for a, v, q in rows:
            if include_flagged or q in (None, "ok"):
                kept.append((a, v))
            elif a in refs:
                kept.append((a, v))
                kept_refs += 1
            else:
                excluded[str(q)] = excluded.get(str(q), 0) + 1
        good = {a: float(v) for a, v in kept if _arch_parses(space, a)}
        if len(good) < len({a for a, _ in kept}):
            self._warn_damaged(len({a for a, _ in kept}) - len(good), f"{what} values")
        report = QualityExclusions(
            excluded=sum(excluded.values()),
            kept_references=kept_refs,
            by_quality=tuple(sorted(excluded.items())),
            kept_flagged=kept_flagged,
        )
        if kept_flagged:
            log.warning(
                "%d of the %s measurements of %s are flagged (noisy or interfered): more than "
                "%g of them, so they are all kept; re-measure on a quiet machine with "
                "`hilnas profile --retry-flagged`",
                kept_flagged,
                what,
                resolved,
                FLAGGED_KEEP,
            )
        if report.excluded:
            log.info(
                "left %d flagged %s measurement(s) of %s out of its table (%s); pass "
                "include_flagged=True to use them",
                report.excluded,
                what,
                resolved,
                ", ".join(f"{k}: {n}" for k, n in report.by_quality),
            )
        return good, report  # later rows overwrite earlier ones
