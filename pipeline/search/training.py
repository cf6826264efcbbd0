"""The training loop: :func:`run_search` trains a MetaHypernetwork for every training target
and saves the run."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from hilnas.pipeline.search.config import SearchConfig, SearchError
from hilnas.pipeline.search.costs import (
    _embedding_vector,
    _hardware_embeddings,
    _HardwareCosts,
    _Normalizer,
    _predictor_fingerprint,
    _Target,
)
from hilnas.pipeline.search.hypernet_step import _hypernet_step
from hilnas.pipeline.search.pool import _onehot, _pool
from hilnas.pipeline.search.progress import ProgressCallback, _report
from hilnas.pipeline.search.queries import _select_queries
from hilnas.pipeline.search.runs import (
    FORMAT,
    HYPERNET_FILE,
    SUPERNET_FILE,
    SURROGATE_FILE,
    _save_run,
    _state_dict_bytes,
)
from hilnas.pipeline.search.scalarization import _fronts_and_sweep, _PreferenceSampler
from hilnas.pipeline.search.supernet_mode import (
    _supernet_oracle,
    _train_supernet_fair,
    _train_supernet_mode,
)

if TYPE_CHECKING:  # pragma: no cover
    from hilnas.pipeline.store import MeasurementStore


def _torch_device(name: str, mode: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if (mode == "supernet" and torch.cuda.is_available()) else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SearchError(f"torch_device {name!r} asked for but no CUDA device is available")
    return name


def run_search(
    cfg: SearchConfig,
    *,
    store: MeasurementStore | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """Train a MetaHypernetwork per ``cfg`` and save it; returns the run directory.

    The run is written to a temporary directory and renamed into place when complete, so an
    interrupted search leaves no half-written run and never touches existing ones.
    """
    import torch
    from hilnas.pipeline.hypernet import MetaHypernetwork, make_sampler
    from hilnas.pipeline.predictors import load_meta_predictor
    from hilnas.pipeline.spaces import get_space

    t_start = time.perf_counter()
    started = datetime.now(timezone.utc)
    space = get_space(cfg.space)
    device = _torch_device(cfg.torch_device, cfg.mode)
    metrics = cfg.hardware_objectives

    # the targets and their embeddings (fails early and clearly for a target without one)
    targets: list[_Target] = []
    problems: list[str] = []
    for name in cfg.train_targets:
        try:
            embs = _hardware_embeddings(name, metrics, store)
        except (LookupError, ValueError) as exc:
            problems.append(f"{name}: {exc}")
            continue
        h = torch.as_tensor(_embedding_vector(embs, metrics))
        targets.append(_Target(name, embs, h))
    if problems:
        raise SearchError(
            "cannot train on these targets (each needs a "
            + " and ".join(metrics)
            + " embedding):\n  "
            + "\n  ".join(problems)
        )

    old_threads = torch.get_num_threads()
    # (surrogate mode: see below; supernet training: torch's default unless told)
    threads = cfg.threads or (1 if cfg.mode == "surrogate" else None)
    if threads:
        torch.set_num_threads(threads)
    rng_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(cfg.seed)
        predictors = {m: load_meta_predictor(m, source=cfg.predictor_source) for m in metrics}
        for p in predictors.values():
            p.eval()
            for prm in p.parameters():
                prm.requires_grad_(False)

        # predicted hardware costs over the pool: normalisation and query selection
        pool = _pool(space, cfg.seed)
        pool_hw = np.zeros((len(targets), len(pool), len(metrics)))
        for ti, t in enumerate(targets):
            for mi, m in enumerate(metrics):
                pool_hw[ti, :, mi] = predictors[m].predict_codes(pool, t.embeddings[m])

        extra: dict[str, Any] = {}
        surrogate = supernet = data = error_fn = fronts = oracle = None
        hw_cols = [j for j, o in enumerate(cfg.objectives) if o != "error"]  # metrics' order
        direct = (
            cfg.mode == "supernet" and cfg.supernet_error == "direct" and "error" in cfg.objectives
        )
        if cfg.mode == "supernet" and "error" in cfg.objectives:
            from hilnas.pipeline.datasets import load_dataset
            from hilnas.pipeline.spaces.nb201.supernet import NB201Supernet

            data = load_dataset(cfg.dataset, root=cfg.data_dir, seed=cfg.seed, limit=cfg.data_limit)
            supernet = NB201Supernet(
                data.model_config(cfg.channels, cfg.cells_per_stage, cfg.reduction)
            ).to(device)
            if not direct:
                extra["supernet"] = _train_supernet_fair(cfg, supernet, data, device, progress)
                oracle = _supernet_oracle(supernet, data)
        if not direct:
            pool_values = np.zeros((len(targets), len(pool), len(cfg.objectives)))
            pool_values[:, :, hw_cols] = pool_hw
            if "error" in cfg.objectives:
                queries, surrogate = _select_queries(cfg, space, pool, pool_hw, progress, oracle)
                with torch.no_grad():
                    pool_err = surrogate(torch.from_numpy(_onehot(space, pool))).numpy()
                pool_values[:, :, cfg.objectives.index("error")] = pool_err[None, :]
                error_fn = surrogate
                extra["surrogate"] = {
                    "config": surrogate.config(),
                    "accuracy_column": cfg.accuracy_column
                    if oracle is None
                    else f"supernet:{cfg.dataset}",
                    "queries": len(queries),
                    "queried": [
                        [space.format(a), float(e)]
                        for a, e in zip(queries.archs, queries.error_pct, strict=False)
                    ],
                }
            lo, hi = pool_values.min(1), pool_values.max(1)
            normalizer = _Normalizer.minmax(lo, hi)
            normed = (pool_values - lo[:, None]) / np.maximum(hi - lo, 1e-12)[:, None]
            fronts, sweep = _fronts_and_sweep(normed)
            extra["sweep_preferences"] = np.round(sweep, 6).tolist()
        else:
            lo = np.zeros((len(targets), len(cfg.objectives)))
            hi = np.ones_like(lo)
            lo[:, hw_cols], hi[:, hw_cols] = pool_hw.min(1), pool_hw.max(1)
            # the cross-entropy arrives normalised by its range over the probe architectures
            # (see _train_supernet_mode): identity on [0, 1]
            normalizer = _Normalizer.minmax(lo, hi)

        hyper = MetaHypernetwork(
            num_objectives=len(cfg.objectives),
            embed_dim=10 * len(metrics),
            num_decisions=space.num_decisions,
            num_options=space.max_options,
            hidden=cfg.hidden,
            layers=cfg.layers,
            frequencies=cfg.frequencies,
        )
        sampler = make_sampler(cfg.sampler)
        gen = torch.Generator().manual_seed(cfg.seed)
        prefs = _PreferenceSampler(len(cfg.objectives), fronts, cfg.front_preferences, cfg.seed)
        opt = torch.optim.Adam(hyper.parameters(), lr=cfg.lr)
        hw_costs = _HardwareCosts(predictors, targets, metrics, space)

        if not direct:
            # the surrogate-mode step is many tiny tensor operations: one thread is fastest
            torch.set_num_threads(cfg.threads or 1)
            total = cfg.total_epochs * cfg.steps_per_epoch
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(
                opt, T_max=total, eta_min=cfg.lr * 0.05
            )
            for step in range(total):
                loss = _hypernet_step(
                    cfg,
                    hyper,
                    opt,
                    sampler,
                    hw_costs,
                    normalizer,
                    targets,
                    error_fn,
                    step / total,
                    gen,
                    prefs,
                )
                sched.step()
                if (step + 1) % cfg.steps_per_epoch == 0 or step + 1 == total:
                    _report(progress, "train", step + 1, total, f"loss {loss:.4f}")
        else:
            pick = np.random.default_rng(cfg.seed).choice(
                len(pool), min(cfg.probe_archs, len(pool)), replace=False
            )
            span = np.maximum(hi[:, hw_cols] - lo[:, hw_cols], 1e-12)
            probe_hw = (pool_hw[:, pick] - lo[:, None, hw_cols]) / span[:, None, :]
            extra["supernet"] = _train_supernet_mode(
                cfg,
                hyper,
                opt,
                sampler,
                hw_costs.to(device),
                normalizer.to(device),
                targets,
                supernet,
                data,
                device,
                prefs,
                progress,
                (pool[pick], probe_hw),
            )
            sweep = extra["supernet"].pop("sweep_preferences", None)
            if sweep is not None:
                extra["sweep_preferences"] = sweep

        settings = {
            "format": FORMAT,
            "space": cfg.space,
            "objectives": list(cfg.objectives),
            "mode": cfg.mode,
            "seed": cfg.seed,
            "train_targets": [t.name for t in targets],
            "config": cfg.to_dict(),
            "hypernet": hyper.config(),
            "sampler": sampler.config(),
            "predictors": {
                m: {
                    "fingerprint": _predictor_fingerprint(p),
                    "metadata": getattr(p, "metadata", {}),
                }
                for m, p in predictors.items()
            },
            "started": started.isoformat(timespec="seconds"),
            "wall_s": None,
            **extra,
        }
        files = {HYPERNET_FILE: _state_dict_bytes(hyper)}
        if surrogate is not None:
            files[SURROGATE_FILE] = _state_dict_bytes(surrogate)
        if supernet is not None:
            files[SUPERNET_FILE] = _state_dict_bytes(supernet)
        settings["wall_s"] = time.perf_counter() - t_start
        path = _save_run(settings, files, started)
        _report(progress, "save", 1, 1, str(path))
        return path
    finally:
        torch.random.set_rng_state(rng_state)
        torch.set_num_threads(old_threads)
