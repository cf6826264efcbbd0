"""Weight training of a weight-sharing supernet, for any space.

A supernet here is a module called as ``net(x, arch)`` with ``arch`` the encoding of one
architecture (e.g. NB201's one-hot ``(6, 5)``,
:class:`~hilnas.pipeline.spaces.nb201.supernet.NB201Supernet`); these helpers train its shared
weights on classification data, the loss of a step averaged over several architectures (the
sandwich rule, a fair sample, or the hypernetwork's samples). The search's supernet phases, the
OFA supernet's CPU training and standalone retraining use them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SUPERNET_THREADS", "torch_threads", "train_epochs", "weight_optimizer", "weight_step"]

#: torch threads for training and evaluating the reduced OFA supernet on a CPU. Its
#: convolutions are tiny, so a second thread gains little and loses much when anything else
#: runs: one epoch on this project's 2-core machine took 10.4 s on two threads and 12.6 s on one
#: when quiet, but 62-128 s on two and 13.5 s on one beside other jobs (load 2.3-2.7). (The GPT
#: supernet's matrices are larger: it keeps torch's default, 0.20 s a step on two threads
#: against 0.33 s on one, quiet.)
SUPERNET_THREADS = 1


@contextmanager
def torch_threads(n: int | None = SUPERNET_THREADS) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (None: leave them), then restore them."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ----------------------------------------------------------------------------------------------
# weight training (the search's supernet phases and standalone retraining)
# ----------------------------------------------------------------------------------------------
def weight_optimizer(net: nn.Module, lr: float, total_steps: int):
    """SGD (Nesterov momentum 0.9, weight decay 3e-4) with a cosine schedule over ``total_steps``."""
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=3e-4)
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_steps))


def weight_step(net, opt, sched, x, y, archs: torch.Tensor, clip: float | None = None) -> float:
    """One SGD step on a batch, the loss averaged over the architectures ``archs`` (``(n, ...)``
    encodings, e.g. NB201's ``(n, 6, 5)`` one-hots)
    (gradients accumulated one architecture at a time); returns the mean loss."""
    opt.zero_grad(set_to_none=True)
    total = 0.0
    for arch in archs:
        part = F.cross_entropy(net(x, arch), y) / len(archs)
        part.backward()
        total += float(part.detach())
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
    opt.step()
    sched.step()
    return total


def train_epochs(
    net,
    x: torch.Tensor,
    y: torch.Tensor,
    archs_for_step,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator | None = None,
    clip: float | None = None,
    on_epoch=None,
) -> list[float]:
    """Train ``net`` for ``epochs`` passes over ``(x, y)`` in shuffled batches, each step on the
    architectures ``archs_for_step()`` returns; ``generator`` shuffles (``None``: torch's
    global one). Calls ``on_epoch(epoch, mean_loss)``; returns the mean loss per epoch."""
    n = len(y)
    steps = max(1, n // batch_size)
    opt, sched = weight_optimizer(net, lr, epochs * steps)
    net.train()
    history = []
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=generator).to(x.device)
        losses = []
        for s in range(steps):
            idx = perm[s * batch_size : (s + 1) * batch_size]
            losses.append(weight_step(net, opt, sched, x[idx], y[idx], archs_for_step(), clip))
        history.append(float(np.mean(losses)))
        if on_epoch is not None:
            on_epoch(epoch + 1, history[-1])
    return history
