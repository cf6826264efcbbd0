"""PyTorch modules of OFA MobileNetV3 subnets (one fixed architecture per module).

:class:`OFANetwork` lays out the layers of a :class:`~hilnas.pipeline.spaces.ofa_mbv3.space.Plan`
and loads the deterministic weights of :mod:`.weights` (its ``state_dict`` names are the ones
the ONNX builder reads). Modules are created on the ``meta`` device and then given their tensors
(``load_state_dict(assign=True)``), so building a subnet neither spends time on torch's default
initialisation nor touches torch's global random generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hilnas.pipeline.spaces.ofa_mbv3.space import BN_EPS, MBConv, Plan
from hilnas.pipeline.spaces.ofa_mbv3.weights import WEIGHT_SEED, initial_state
from torch import nn


def activation(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "relu":
        return F.relu(x)
    if kind == "hswish":
        return F.hardswish(x)
    if kind == "none":
        return x
    raise ValueError(f"unknown activation {kind!r}")  # pragma: no cover - plans use the three


class ConvBN(nn.Module):
    """``act(bn(conv(x)))``, a bias-free conv with ``same`` padding."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, act: str, groups: int = 1
    ) -> None:
        super().__init__()
        self.act = act
        self.conv = nn.Conv2d(
            c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False, device="meta"
        )
        self.bn = nn.BatchNorm2d(c_out, eps=BN_EPS, device="meta")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activation(self.bn(self.conv(x)), self.act)


class SqueezeExcite(nn.Module):
    """``x * hardsigmoid(expand(relu(reduce(mean(x)))))``, MobileNetV3's channel attention."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1, device="meta")
        self.expand = nn.Conv2d(squeeze, channels, 1, device="meta")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3), keepdim=True)
        return x * F.hardsigmoid(self.expand(F.relu(self.reduce(y))))


class MBConvBlock(nn.Module):
    """One inverted-residual layer of the plan (``spec``), with its residual when it has one."""

    def __init__(self, spec: MBConv) -> None:
        super().__init__()
        self.spec = spec
        if spec.expand:
            self.expand = ConvBN(spec.c_in, spec.c_mid, 1, 1, spec.act)
        self.dw = ConvBN(spec.c_mid, spec.c_mid, spec.kernel, spec.stride, spec.act, spec.c_mid)
        if spec.squeeze:
            self.se = SqueezeExcite(spec.c_mid, spec.squeeze)
        self.project = ConvBN(spec.c_mid, spec.c_out, 1, 1, "none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.spec.expand else x
        y = self.dw(y)
        if self.spec.squeeze:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.spec.residual else y


class Head(nn.Module):
    """Final expand (1x1 conv, BN, hard-swish), global pooling, feature mix (1x1, hard-swish)."""

    def __init__(self, c_in: int, final_expand: int, last_channel: int) -> None:
        super().__init__()
        self.expand = ConvBN(c_in, final_expand, 1, 1, "hswish")
        self.mix = nn.Conv2d(final_expand, last_channel, 1, bias=False, device="meta")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.expand(x).mean((2, 3), keepdim=True)
        return torch.flatten(F.hardswish(self.mix(x)), 1)


class OFANetwork(nn.Module):
    """An OFA MobileNetV3 subnet: stem, stem MBConv, the active layers of 5 stages, head."""

    def __init__(self, plan: Plan, seed: int = WEIGHT_SEED) -> None:
        super().__init__()
        self.plan = plan
        self.stem = ConvBN(plan.in_channels, plan.stem, 3, 2, "hswish")
        self.first = MBConvBlock(plan.blocks[0])
        stages: list[list[MBConvBlock]] = [[] for _ in range(5)]
        for spec in plan.blocks[1:]:
            stages[int(spec.path.split(".")[1])].append(MBConvBlock(spec))
        self.stages = nn.ModuleList(nn.ModuleList(s) for s in stages)
        self.head = Head(plan.blocks[-1].c_out, plan.final_expand, plan.last_channel)
        self.classifier = nn.Linear(plan.last_channel, plan.num_classes, device="meta")
        state = {k: torch.from_numpy(v.copy()) for k, v in initial_state(plan, seed).items()}
        for name, _ in self.named_buffers():
            if name.endswith("num_batches_tracked"):
                state[name] = torch.zeros((), dtype=torch.long)
        self.load_state_dict(state, strict=True, assign=True)  # meta tensors -> these

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(self.stem(x))
        for stage in self.stages:
            for block in stage:
                x = block(x)
        return self.classifier(self.head(x))
