"""The OFA MobileNetV3 weight-sharing supernet (elastic kernel, expand ratio and depth).

One network holds the largest version of every layer slot (kernel 7, expand ratio 6, depth 4
per stage); a subnet uses a part of it, as in Once-for-All:

- **elastic kernel**: a depthwise kernel of size k is the centre k x k crop of the slot's 7x7
  kernel (OFA additionally learns small kernel-transform matrices; this module does not);
- **elastic expand**: expand ratio e uses the first ``make_divisible(c_in * e)`` channels of the
  slot's expand conv, depthwise conv, squeeze-excite and projection (and the first
  ``make_divisible(mid / 4)`` squeeze channels);
- **elastic depth**: a stage of depth d runs its first d layers.

``forward(x, arch)`` takes ``arch`` as the space's hard one-hot ``(46, 25)`` (``space.one_hot``
or a straight-through sample of a hypernetwork). Only the selected options run; each active
layer's branch is multiplied by the one-hot entries of its kernel and expand choices and, for
the layers a depth choice can drop, by the sum of the depth entries that keep it (all equal to
1 in value), so the loss's gradient reaches those entries of the one-hot. The resolution is
the caller's: the supernet runs at the size of ``x`` (train on a CPU at a reduced resolution;
the latency objective stays that of the full network at the architecture's own resolution).

Batch normalisation uses the statistics of the current batch (no running statistics), as the
NB201 supernet does: thousands of subnets share the weights and no stored statistics fit them
all. Evaluate with batches of a reasonable size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from hilnas.pipeline.spaces.ofa_mbv3.space import (
    ACTIVATIONS,
    DEPTH_POS,
    DEPTHS,
    EXPAND_POS,
    EXPANDS,
    KERNEL_POS,
    KERNELS,
    MAX_DEPTH,
    NUM_DECISIONS,
    NUM_STAGES,
    SE_REDUCTION,
    SQUEEZE_EXCITE,
    STRIDES,
    OFAConfig,
    make_divisible,
    plan_decoded,
    stage_widths,
)
from torch import nn

_MAX_K = max(KERNELS)


def _act(x: torch.Tensor, kind: str) -> torch.Tensor:
    return F.relu(x) if kind == "relu" else F.hardswish(x)


def _bn(x: torch.Tensor, bn: nn.BatchNorm2d, channels: int) -> torch.Tensor:
    return F.batch_norm(
        x, None, None, bn.weight[:channels], bn.bias[:channels], training=True, eps=bn.eps
    )


def _batch_norm(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, track_running_stats=False)


class ElasticMBConv(nn.Module):
    """One layer slot at its largest (kernel 7, expand 6); runs any kernel/expand of the space.

    ``crop_to_input`` (default off): crop the depthwise kernel to the taps that can reach the
    input. On an ``H x W`` map with "same" padding only the centre
    ``min(k, 2H - 1) x min(k, 2W - 1)`` taps ever meet a pixel, the others multiply padding
    zeros, so the output is the same; on the tiny maps of a reduced-resolution supernet (1x1 ..
    4x4 in the last stages) oneDNN's 7x7 depthwise kernels are many times slower than the
    cropped ones (the CPU training of :mod:`.train` turns it on).
    """

    crop_to_input: bool = False

    def __init__(self, c_in: int, c_out: int, stride: int, act: str, se: bool) -> None:
        super().__init__()
        self.c_in, self.c_out, self.stride, self.act, self.se = c_in, c_out, stride, act, se
        mid = make_divisible(c_in * max(EXPANDS))
        self.expand = nn.Conv2d(c_in, mid, 1, bias=False)
        self.expand_bn = _batch_norm(mid)
        self.dw = nn.Conv2d(mid, mid, _MAX_K, stride, _MAX_K // 2, groups=mid, bias=False)
        self.dw_bn = _batch_norm(mid)
        if se:
            squeeze = make_divisible(mid // SE_REDUCTION)
            self.se_reduce = nn.Conv2d(mid, squeeze, 1)
            self.se_expand = nn.Conv2d(squeeze, mid, 1)
        self.project = nn.Conv2d(mid, c_out, 1, bias=False)
        self.project_bn = _batch_norm(c_out)

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.c_in == self.c_out

    def forward(self, x: torch.Tensor, kernel: int, expand: int) -> torch.Tensor:
        mid = make_divisible(round(self.c_in * expand))
        y = _act(_bn(F.conv2d(x, self.expand.weight[:mid]), self.expand_bn, mid), self.act)
        kh = kw = kernel
        if self.crop_to_input:
            kh, kw = min(kernel, 2 * y.shape[-2] - 1), min(kernel, 2 * y.shape[-1] - 1)
        ch, cw = (_MAX_K - kh) // 2, (_MAX_K - kw) // 2
        w = self.dw.weight[:mid, :, ch : ch + kh, cw : cw + kw]
        y = F.conv2d(y, w, None, self.stride, (kh // 2, kw // 2), groups=mid)
        y = _act(_bn(y, self.dw_bn, mid), self.act)
        if self.se:
            sq = make_divisible(mid // SE_REDUCTION)
            s = y.mean((2, 3), keepdim=True)
            s = F.relu(F.conv2d(s, self.se_reduce.weight[:sq, :mid], self.se_reduce.bias[:sq]))
            s = F.conv2d(s, self.se_expand.weight[:mid, :sq], self.se_expand.bias[:mid])
            y = y * F.hardsigmoid(s)
        return _bn(F.conv2d(y, self.project.weight[:, :mid]), self.project_bn, self.c_out)


class OFASupernet(nn.Module):
    """Stem, stem MBConv, 5 stages of 4 elastic slots, head; ``forward(x, one_hot)``."""

    def __init__(self, config: OFAConfig, seed: int = 0) -> None:
        super().__init__()
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)  # deterministic initial weights for a seed
        try:
            self.config = config
            widths = stage_widths(config)
            stem = widths[0]
            self.stem = nn.Conv2d(config.in_channels, stem, 3, 2, 1, bias=False)
            self.stem_bn = _batch_norm(stem)
            self.first_dw = nn.Conv2d(stem, stem, 3, 1, 1, groups=stem, bias=False)
            self.first_dw_bn = _batch_norm(stem)
            self.first_project = nn.Conv2d(stem, widths[1], 1, bias=False)
            self.first_project_bn = _batch_norm(widths[1])
            self.stages = nn.ModuleList()
            c_in = widths[1]
            for s in range(NUM_STAGES):
                slots = nn.ModuleList()
                for layer in range(MAX_DEPTH):
                    stride = STRIDES[s] if layer == 0 else 1
                    slots.append(
                        ElasticMBConv(
                            c_in, widths[2 + s], stride, ACTIVATIONS[s], SQUEEZE_EXCITE[s]
                        )
                    )
                    c_in = widths[2 + s]
                self.stages.append(slots)
            self.head_expand = nn.Conv2d(c_in, widths[7], 1, bias=False)
            self.head_expand_bn = _batch_norm(widths[7])
            self.head_mix = nn.Conv2d(widths[7], widths[8], 1, bias=False)
            self.classifier = nn.Linear(widths[8], config.num_classes)
        finally:
            torch.random.set_rng_state(state)

    def forward(self, x: torch.Tensor, arch: torch.Tensor) -> torch.Tensor:
        if arch.dim() != 2 or arch.shape[0] != NUM_DECISIONS:
            raise ValueError(
                f"arch must be the space's one-hot ({NUM_DECISIONS}, options), "
                f"got {tuple(arch.shape)}"
            )
        choice = arch.detach().argmax(dim=1).tolist()
        x = F.hardswish(_bn(self.stem(x), self.stem_bn, self.stem.out_channels))
        y = F.relu(_bn(self.first_dw(x), self.first_dw_bn, x.shape[1]))
        y = _bn(self.first_project(y), self.first_project_bn, self.first_project.out_channels)
        x = x + y if y.shape == x.shape else y
        for s, slots in enumerate(self.stages):
            d_row = DEPTH_POS + s
            depth = DEPTHS[choice[d_row]]
            for layer in range(depth):
                k_row = KERNEL_POS + s * MAX_DEPTH + layer
                e_row = EXPAND_POS + s * MAX_DEPTH + layer
                k, e = choice[k_row], choice[e_row]
                gate = arch[k_row, k] * arch[e_row, e]
                if layer >= DEPTHS[0]:  # a layer the depth choice can drop
                    keep = [i for i, d in enumerate(DEPTHS) if d > layer]
                    gate = gate * arch[d_row, keep].sum()
                branch = slots[layer](x, KERNELS[k], EXPANDS[e]) * gate
                x = x + branch if slots[layer].residual else branch
        x = F.hardswish(
            _bn(self.head_expand(x), self.head_expand_bn, self.head_expand.out_channels)
        )
        x = F.hardswish(self.head_mix(x.mean((2, 3), keepdim=True)))
        return self.classifier(torch.flatten(x, 1))

    @torch.no_grad()
    def extract(self, arch: Sequence[int]):
        """The standalone :class:`~.torch_model.OFANetwork` of ``arch`` with this supernet's
        weights (sliced and cropped as ``forward`` uses them), in eval mode.

        Its BN layers get running mean 0 and variance 1 (the supernet keeps none): run
        :func:`calibrate_batch_norm` on a few batches before evaluating or exporting it
        (``build_onnx(..., model=net)``). In train mode it computes exactly what
        ``forward(x, one_hot(arch))`` computes.
        """
        from hilnas.pipeline.spaces.ofa_mbv3.space import OFAMobileNetV3
        from hilnas.pipeline.spaces.ofa_mbv3.torch_model import OFANetwork

        plan = plan_decoded(OFAMobileNetV3().decode(arch), self.config)
        net = OFANetwork(plan)
        state = net.state_dict()

        def put(name: str, value: torch.Tensor) -> None:
            state[name] = value.detach().clone().contiguous()

        def put_bn(prefix: str, bn: nn.BatchNorm2d, c: int) -> None:
            put(f"{prefix}.weight", bn.weight[:c])
            put(f"{prefix}.bias", bn.bias[:c])

        put("stem.conv.weight", self.stem.weight)
        put_bn("stem.bn", self.stem_bn, plan.stem)
        put("first.dw.conv.weight", self.first_dw.weight)
        put_bn("first.dw.bn", self.first_dw_bn, plan.stem)
        put("first.project.conv.weight", self.first_project.weight)
        put_bn("first.project.bn", self.first_project_bn, plan.blocks[0].c_out)
        for b in plan.blocks[1:]:
            _, s, layer = b.path.split(".")
            slot: ElasticMBConv = self.stages[int(s)][int(layer)]
            mid, p = b.c_mid, b.path
            put(f"{p}.expand.conv.weight", slot.expand.weight[:mid])
            put_bn(f"{p}.expand.bn", slot.expand_bn, mid)
            crop = (_MAX_K - b.kernel) // 2
            put(
                f"{p}.dw.conv.weight",
                slot.dw.weight[:mid, :, crop : crop + b.kernel, crop : crop + b.kernel],
            )
            put_bn(f"{p}.dw.bn", slot.dw_bn, mid)
            if b.squeeze:
                sq = b.squeeze
                put(f"{p}.se.reduce.weight", slot.se_reduce.weight[:sq, :mid])
                put(f"{p}.se.reduce.bias", slot.se_reduce.bias[:sq])
                put(f"{p}.se.expand.weight", slot.se_expand.weight[:mid, :sq])
                put(f"{p}.se.expand.bias", slot.se_expand.bias[:mid])
            put(f"{p}.project.conv.weight", slot.project.weight[:, :mid])
            put_bn(f"{p}.project.bn", slot.project_bn, b.c_out)
        put("head.expand.conv.weight", self.head_expand.weight)
        put_bn("head.expand.bn", self.head_expand_bn, plan.final_expand)
        put("head.mix.weight", self.head_mix.weight)
        put("classifier.weight", self.classifier.weight)
        put("classifier.bias", self.classifier.bias)
        net.load_state_dict(state, strict=True)
        return net.eval()


@torch.no_grad()
def calibrate_batch_norm(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Set every BN layer's running statistics to their average over ``batches`` (OFA's
    ``set_running_statistics``), so that an extracted subnet evaluates in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    model.train()
    try:
        for x in batches:
            model(x)
    finally:
        for bn, m in zip(bns, momenta, strict=True):
            bn.momentum = m
    return model.eval()
