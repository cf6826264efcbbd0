"""Supernet mode: the weight-sharing supernet trained alone (strict fairness) as the error
oracle, or alternated with hypernetwork steps (the ``direct`` error term)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hilnas.pipeline.search.hypernet_step import _hypernet_step
from hilnas.pipeline.search.progress import _report
from hilnas.pipeline.search.scalarization import _fronts_and_sweep

#: Validation images on which supernet mode measures its probe architectures.
PROBE_IMAGES = 512


def _random_archs(kind: str, num_decisions: int, num_options: int, gen):
    """Architectures ``(n, D, K)`` for one weight step that is not steered by the hypernetwork.

    ``uniform``: one architecture, each decision uniformly at random. ``fair`` (strict fairness,
    as in FairNAS, Chu et al. 2021): ``K`` architectures from one random permutation of the
    options per decision, so every option of every decision is trained exactly once on the
    batch. Uniform sampling updates each option equally often only on average; weight-free
    options (skip, zero) need no training, so under it the supernet systematically rates them
    better than they would be when trained alone.
    """
    import torch
    import torch.nn.functional as F

    if kind == "uniform":
        codes = torch.randint(num_options, (1, num_decisions), generator=gen)
    else:
        perms = torch.stack(
            [torch.randperm(num_options, generator=gen) for _ in range(num_decisions)]
        )
        codes = perms.T  # (K, D): column j of the permutations is architecture j
    return F.one_hot(codes, num_options).float()


#: Gradient-norm clip of the search's supernet weight steps.
WEIGHT_CLIP = 5.0


def _train_supernet_fair(cfg, supernet, data, device, progress) -> dict[str, Any]:
    """Train the supernet alone for ``supernet_epochs`` (one-shot, architectures drawn as
    ``weight_sampling`` says, strict fairness by default); returns its record."""
    import torch
    from hilnas.pipeline.spaces.nb201 import EDGES, OPS
    from hilnas.pipeline.supernet import train_epochs

    gen = torch.Generator().manual_seed(cfg.seed)
    history = []

    def on_epoch(epoch: int, loss: float) -> None:
        history.append({"epoch": epoch, "train_ce": loss})
        _report(progress, "supernet", epoch, cfg.supernet_epochs, f"train CE {loss:.3f}")

    train_epochs(
        supernet,
        data.train_x.to(device),
        data.train_y.to(device),
        lambda: _random_archs(cfg.weight_sampling, len(EDGES), len(OPS), gen).to(device),
        epochs=cfg.supernet_epochs,
        batch_size=cfg.batch_size,
        lr=cfg.weight_lr,
        generator=gen,
        clip=WEIGHT_CLIP,
        on_epoch=on_epoch,
    )
    supernet.eval()
    return {
        "dataset": data.describe(),
        "model_config": data.model_config(cfg.channels, cfg.cells_per_stage, cfg.reduction).key(),
        "epochs": cfg.supernet_epochs,
        "weight_sampling": cfg.weight_sampling,
        "history": history,
    }


def _supernet_oracle(supernet, data):
    """codes -> their top-1 error (%) under the trained supernet on the whole validation split
    (what :class:`TrainedSearch` reports for supernet-mode fronts), floored at half an image:
    the surrogate fits log-error, and a perfect score on a few hundred images is the split's
    resolution, not a zero error."""
    from hilnas.pipeline.surrogate import AccuracyQueries

    floor = 50.0 / max(1, len(data.val_y))

    def oracle(codes):
        err = [max(supernet.error_pct(data.val_x, data.val_y, c), floor) for c in codes]
        return AccuracyQueries(
            tuple(tuple(c) for c in codes), np.asarray(err, dtype=np.float64), "supernet"
        )

    return oracle


def _train_supernet_mode(
    cfg,
    hyper,
    opt,
    sampler,
    hw_costs,
    normalizer,
    targets,
    supernet,
    data,
    device,
    prefs,
    progress,
    probe,
):
    """Alternate supernet SGD steps and hypernetwork MGDA steps (see the package docstring).

    ``probe``: ``(codes (n, D), hardware costs (T, n, H))``, a fixed random set of
    architectures with their normalised predicted hardware costs. At the start of every
    epoch after the warm-up the supernet's validation cross-entropy of each probe
    architecture is measured; it sets the error term's normalisation (its min and max over
    the probe) and, with the hardware costs, each target's current front among the probe
    architectures, at which the preference sampler then aims (as surrogate mode aims at its
    predicted fronts) and from which a front's preference sweep is drawn after training.
    Without it, a flat Dirichlet almost never asks about the accurate end of a front: on
    digits the accurate architectures' cross-entropies are all within a few percent of the
    range spanned by bad ones, so every preference short of nearly all weight on the error
    picks the cheapest architecture.
    """
    import torch
    import torch.nn.functional as F
    from hilnas.pipeline.supernet import weight_optimizer, weight_step

    hyper.to(device)
    for t in targets:
        t.h = t.h.to(device)
    n_train = len(data.train_y)
    steps_per_epoch = max(1, n_train // cfg.batch_size)
    total_epochs = cfg.total_epochs
    w_opt, w_sched = weight_optimizer(supernet, cfg.weight_lr, total_epochs * steps_per_epoch)
    err_col = cfg.objectives.index("error") if "error" in cfg.objectives else None
    hw_cols = [j for j, o in enumerate(cfg.objectives) if o != "error"]
    probe_codes = F.one_hot(torch.as_tensor(probe[0]), hyper.num_options).float().to(device)
    probe_x, probe_y = data.val_x[:PROBE_IMAGES].to(device), data.val_y[:PROBE_IMAGES].to(device)
    ce_bounds = [0.0, 1.0]
    sweep = None
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    val_x, val_y = data.val_x.to(device), data.val_y.to(device)
    num_d, num_k = hyper.num_decisions, hyper.num_options
    cpu_gen = torch.Generator().manual_seed(cfg.seed)
    history = []

    def val_batch():
        if len(val_y) <= cfg.val_batch_size:
            return val_x, val_y
        idx = torch.randperm(len(val_y), generator=cpu_gen)[: cfg.val_batch_size].to(device)
        return val_x[idx], val_y[idx]

    def error_fn(arch):
        # one supernet pass per architecture of the batch, on its own validation batch
        vals = []
        for a in arch:
            x, y = val_batch()
            vals.append(F.cross_entropy(supernet(x, a), y))
        lo, hi = ce_bounds
        return (torch.stack(vals) - lo) / (hi - lo)

    def probe_fronts():
        # the probe architectures' validation cross-entropy: the error's bounds, the fronts
        with torch.no_grad():
            ce = np.array(
                [float(F.cross_entropy(supernet(probe_x, a), probe_y)) for a in probe_codes]
            )
        lo, hi = float(ce.min()), float(max(ce.max(), ce.min() + 1e-6))
        ce_bounds[:] = [lo, hi]
        values = np.zeros((len(targets), len(ce), len(cfg.objectives)))
        values[:, :, hw_cols] = probe[1]
        values[:, :, err_col] = ((ce - lo) / (hi - lo))[None, :]
        fronts, sweep = _fronts_and_sweep(values)
        prefs.aim(fronts, cfg.front_preferences)
        return sweep

    hyper_steps = 0
    for epoch in range(total_epochs):
        warm = epoch < cfg.warmup_epochs
        if not warm and err_col is not None:
            sweep = probe_fronts()
        perm = torch.randperm(n_train, generator=cpu_gen).to(device)
        losses, hlosses = [], []
        supernet.train()
        for s in range(steps_per_epoch):
            idx = perm[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            x, y = train_x[idx], train_y[idx]
            with torch.no_grad():
                if warm or float(torch.rand(1, generator=cpu_gen)) < cfg.uniform_share:
                    archs = _random_archs(cfg.weight_sampling, num_d, num_k, cpu_gen)
                else:
                    ti = torch.randint(len(targets), (1,), generator=cpu_gen)
                    r = prefs.sample(ti).to(device)
                    archs = sampler(hyper(r, targets[int(ti)].h.unsqueeze(0)), generator=None)
            losses.append(
                weight_step(supernet, w_opt, w_sched, x, y, archs.to(device), WEIGHT_CLIP)
            )
            if not warm and s % cfg.hyper_every == 0:
                frac = (epoch - cfg.warmup_epochs + s / steps_per_epoch) / max(
                    1, total_epochs - cfg.warmup_epochs
                )
                hlosses.append(
                    _hypernet_step(
                        cfg,
                        hyper,
                        opt,
                        sampler,
                        hw_costs,
                        normalizer,
                        targets,
                        error_fn,
                        frac,
                        None,
                        prefs,
                    )
                )
                hyper_steps += 1
        record = {"epoch": epoch + 1, "train_ce": float(np.mean(losses))}
        if hlosses:
            record["hyper_loss"] = float(np.mean(hlosses))
        history.append(record)
        _report(
            progress,
            "warmup" if warm else "train",
            epoch + 1,
            total_epochs,
            f"train CE {record['train_ce']:.3f}"
            + (f", hyper loss {record['hyper_loss']:.4f}" if hlosses else ""),
        )
    hyper.cpu()
    for t in targets:
        t.h = t.h.cpu()
    supernet.cpu()
    return {
        "dataset": data.describe(),
        "model_config": data.model_config(cfg.channels, cfg.cells_per_stage, cfg.reduction).key(),
        "history": history,
        "hyper_steps": hyper_steps,
        "probe_archs": len(probe[0]),
        "sweep_preferences": None if sweep is None else np.round(sweep, 6).tolist(),
    }
