"""One MGDA step of the hypernetwork over all training targets: the logits its architecture
sampler sees and the min-norm combination of the targets' gradients."""

from __future__ import annotations

from hilnas.pipeline import mo
from hilnas.pipeline.search.costs import _costs
from hilnas.pipeline.search.scalarization import scalarize


def _hypernet_step(
    cfg, hyper, opt, sampler, hw_costs, normalizer, targets, error_fn, progress_frac, gen, prefs
):
    """One MGDA step of the hypernetwork over all targets; returns the mean scalarised loss.

    All targets' preferences go through the hypernetwork, the sampler and the cost models as
    one batch. Each target's loss depends only on its own rows, so one backward pass gives every
    target's gradient at its logits; a vectorised vector-Jacobian product of the hypernetwork per
    target (``torch.func``) turns those into per-target parameter gradients. Each is normalised,
    then the min-norm solver combines them.
    """
    import torch
    from torch.func import functional_call, vjp, vmap

    names = [n for n, p in hyper.named_parameters() if p.requires_grad]
    params = {n: p.detach() for n, p in hyper.named_parameters() if p.requires_grad}
    T, P, M = len(targets), cfg.prefs_per_target, len(cfg.objectives)
    device = next(hyper.parameters()).device
    rows = torch.arange(T, device=device).repeat_interleave(P)
    r = prefs.sample(rows.cpu()).to(device)
    h = torch.stack([t.h for t in targets]).to(device)[rows]
    logits = hyper(r, h)
    arch = sampler(
        _sampling_logits(cfg, logits, progress_frac), progress=progress_frac, generator=gen
    )
    costs = _costs(cfg, hw_costs, normalizer, rows, arch, error_fn)
    losses = scalarize(r, costs, cfg.scalarization, cfg.smoothing).view(T, P).mean(1)
    (g_logits,) = torch.autograd.grad(losses.sum(), logits)

    def target_grad(r_t, h_t, g_t):
        _, pull = vjp(lambda p: functional_call(hyper, p, (r_t, h_t)), params)
        return pull(g_t)[0]

    per_target = vmap(target_grad)(
        r.view(T, P, M), h.view(T, P, -1), g_logits.view(T, P, *g_logits.shape[1:])
    )
    G = torch.cat([per_target[n].reshape(T, -1) for n in names], dim=1)
    direction = _min_norm_direction(G, cfg.mgda)
    _set_grads([p for name, p in hyper.named_parameters() if name in params], direction)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(losses.detach().mean())


def _sampling_logits(cfg, logits, progress: float):
    """The logits the sampler sees during training.

    With ``logit_scale`` set, each decision's logits are standardised (zero mean, unit spread)
    and multiplied by a scale annealed geometrically from ``logit_scale`` to
    ``logit_scale_final``: the sampling distribution keeps a bounded sharpness, so it keeps
    exploring and the straight-through gradient (which vanishes as a softmax saturates) stays
    alive; the argmax, what a trained hypernetwork is read by, is unchanged.
    """
    if cfg.logit_scale is None:
        return logits
    scale = _annealed_scale(cfg.logit_scale, cfg.logit_scale_final, progress)
    return _standardised_logits(logits, scale)


def _annealed_scale(start: float, final: float | None, progress: float) -> float:
    """The logit scale at training ``progress`` (clipped to [0, 1]): geometric from ``start``
    at 0 to ``final`` at 1 (``None``: ``start`` throughout)."""
    final = final if final is not None else start
    return start * (final / start) ** min(max(progress, 0.0), 1.0)


def _standardised_logits(logits, scale: float):
    """``logits`` ``(..., K)`` with each decision's ``K`` values standardised (zero mean, unit
    spread, ``1e-6`` added to the variance) and multiplied by ``scale``."""
    centred = logits - logits.mean(-1, keepdim=True)
    spread = centred.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()
    return scale * centred / spread


def _min_norm_direction(G, mgda: bool = True):
    """The update direction ``(P,)`` from per-target gradients ``G`` ``(T, P)``: every row
    normalised to unit length, then combined by the min-norm point of their convex hull (MGDA;
    with ``mgda`` and ``T > 1``), else averaged."""
    T = G.shape[0]
    gram = G @ G.T
    norms = gram.diagonal().clamp_min(1e-24).sqrt()
    if mgda and T > 1:
        # the min-norm weights of the normalised gradients depend on them only through their
        # inner products: hand the solver a (T, T) factor of the normalised Gram matrix
        gamma = mo.min_norm_solver(_gram_factor(gram / (norms[:, None] * norms[None, :])))
        weights = gamma.to(G.dtype) / norms
    else:
        weights = 1.0 / (T * norms)
    return weights @ G


def _set_grads(params, direction) -> None:
    """Write the flat ``direction`` into the ``.grad`` of ``params``, in their order."""
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = direction[offset : offset + n].view_as(p).clone()
        offset += n


def _gram_factor(gram):
    """An ``(n, n)`` matrix ``L`` with ``L L^T = gram`` (eigendecomposition, PSD-safe)."""
    import torch

    vals, vecs = torch.linalg.eigh(gram.double())
    return vecs * vals.clamp_min(0.0).sqrt()
