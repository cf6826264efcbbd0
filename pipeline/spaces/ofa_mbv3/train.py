"""Train the OFA MobileNetV3 weight-sharing supernet on MNIST and use it as an error oracle.

No accuracy table exists for the ``ofa_mbv3`` space, so its error objective is the top-1 error
of each subnet with the shared weights of one trained :class:`~.supernet.OFASupernet`
(elastic kernel, expand ratio and depth), as in Once-for-All (Cai et al., ICLR 2020,
arXiv:1908.09791), on the 5,000-image MNIST sample that ships with hilnas (:mod:`.mnist`).

**Reduced width and resolution.** To train on a CPU in minutes, the supernet has a reduced
width multiplier (default 0.35 instead of the space's 1.2), one input channel and 10 classes,
and runs at a reduced resolution: an architecture whose resolution decision is ``r`` (128 ..
224) sees the 28x28 digits resized to ``round(settings.resolution * r / 224)`` pixels (default
32 for ``r = 224``, 18 for ``r = 128``), so the resolution decision still changes the error, as
OFA's elastic resolution does. The latency objective of the search is not affected: it stays
that of the full network at the architecture's own resolution. An error of this oracle is
therefore a proxy (MNIST, small network, short training) of the accuracy ranking, not an
ImageNet accuracy.

**Training.** SGD (Nesterov momentum 0.9, weight decay 3e-4, cosine schedule; AdamW with
``optimizer="adam"``), each step on several subnets whose gradients are accumulated:

- ``sampling="sandwich"`` (the sandwich rule of BigNAS, Yu et al., ECCV 2020,
  arXiv:2003.11142): the largest subnet, the smallest and ``random_subnets`` random ones;
  with ``distill=True`` the others learn the largest subnet's soft predictions (in-place
  distillation) while the largest learns the labels;
- ``sampling="fair"`` (FairNAS strict fairness, Chu et al., ICCV 2021, arXiv:1907.01845): 3
  subnets per step whose choices of every depth, kernel and expand decision are a random
  permutation of its 3 options, so every option is trained equally often; resolutions drawn
  without repetition.

**Defaults** (strict fairness, SGD lr 0.1, batch 32, 4 epochs: 376 steps of 3 subnets)
were chosen on the benchmark ``python -m hilnas.pipeline.benchmarks.ofa_supernet``. With the
sandwich rule (3 epochs, same cost) the smallest subnet, trained every step, got a lower
error than all 20 random subnets although it is the worst of 5 trained alone, and the
supernet's ranking of those 5 disagreed with their standalone ranking (Spearman +0.1,
against +0.8 with strict fairness; 5 architectures, a small sample); in-place distillation, AdamW and batch 128 left the random subnets' errors far
higher. Training takes about 1-3 minutes; training and the oracle run on one torch thread
(:data:`~hilnas.pipeline.supernet.SUPERNET_THREADS`): the convolutions are tiny and extra
threads mostly wait for each other (on a 2-core machine one epoch took 12.6 s on one thread
and 10.4 s on two when quiet, but 13.5 s on one and 62-128 s on two beside other jobs).

**Batch normalisation** uses the statistics of the current batch, as the supernet does: the
oracle evaluates in fixed batches of ``eval_batch_size`` images, so an error is deterministic
for given weights and data.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from hilnas.devices.errors import (
    DataIntegrityError,
    InvalidInputError,
    NotFoundError,
    PreconditionError,
    check_number,
)
from hilnas.pipeline.spaces.ofa_mbv3.mnist import NAME as MNIST_NAME
from hilnas.pipeline.spaces.ofa_mbv3.mnist import load_mnist, resize_images
from hilnas.pipeline.spaces.ofa_mbv3.space import (
    RES_POS,
    RESOLUTIONS,
    OFAConfig,
    OFAMobileNetV3,
)
from hilnas.pipeline.spaces.ofa_mbv3.supernet import ElasticMBConv
from hilnas.pipeline.supernet import torch_threads

SAMPLINGS: tuple[str, ...] = ("sandwich", "fair")
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
FORMAT = "hilnas-ofa-supernet-oracle"
FORMAT_VERSION = 1
WEIGHTS_FILE = "supernet.safetensors"
META_FILE = "oracle.json"
IN_CHANNELS = 1
NUM_CLASSES = 10


@dataclass(frozen=True)
class OFATrainSettings:
    """How the supernet is trained and evaluated (validated on construction).

    Raises :class:`InvalidInputError` for any value out of its range.
    """

    #: width multiplier of the supernet (the space's full network is 1.2; reduced on a CPU)
    width_mult: float = 0.35
    #: input side (pixels) of an architecture of resolution 224; see ``scale_resolution``
    resolution: int = 32
    #: True: resolution r runs at round(resolution * r / 224); False: every one at ``resolution``
    scale_resolution: bool = True
    epochs: int = 4
    batch_size: int = 32
    #: "sgd" (Nesterov momentum 0.9, weight decay 3e-4) or "adam" (AdamW, weight decay 3e-4)
    optimizer: str = "sgd"
    #: peak learning rate of the cosine schedule
    lr: float = 0.1
    #: seed of the initial weights, the batch order and the sampled subnets
    seed: int = 0
    #: "sandwich" (largest + smallest + random_subnets random) or "fair" (strict fairness)
    sampling: str = "fair"
    #: random subnets per step besides the largest and the smallest (sandwich only)
    random_subnets: int = 2
    #: sandwich only: the non-largest subnets learn the largest one's soft predictions
    distill: bool = False
    #: images of the 5,000-image MNIST sample used (60 % train, 20 % validation, 20 % test)
    images: int = 5000
    #: seed of the train / validation / test split (kept apart from ``seed``)
    data_seed: int = 0
    #: images per evaluation batch (batch-statistics BN: fixed batches keep errors deterministic)
    eval_batch_size: int = 500

    def __post_init__(self) -> None:
        check_number("width_mult", self.width_mult, low=0.1, high=1.2, integer=False)
        check_number("resolution", self.resolution, low=8, high=224)
        check_number("epochs", self.epochs, low=1, high=1000)
        check_number("batch_size", self.batch_size, low=2, high=4096)
        check_number("lr", self.lr, low=1e-5, high=10.0, integer=False)
        check_number("seed", self.seed, low=0, high=2**31 - 1)
        check_number("random_subnets", self.random_subnets, low=0, high=16)
        check_number("images", self.images, low=50, high=5000)
        check_number("data_seed", self.data_seed, low=0, high=2**31 - 1)
        check_number("eval_batch_size", self.eval_batch_size, low=2, high=100_000)
        for name in ("scale_resolution", "distill"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidInputError(
                    f"{name} must be True or False, got {getattr(self, name)!r}; pass a bool"
                )
        if self.optimizer not in OPTIMIZERS:
            raise InvalidInputError(
                f"optimizer={self.optimizer!r} is unknown; use one of {', '.join(OPTIMIZERS)}"
            )
        if self.sampling not in SAMPLINGS:
            raise InvalidInputError(
                f"sampling={self.sampling!r} is unknown; use one of {', '.join(SAMPLINGS)}"
            )

    @property
    def in_channels(self) -> int:
        return IN_CHANNELS

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES

    def model_config(self) -> OFAConfig:
        """The supernet's :class:`OFAConfig` (reduced width, 1 channel, 10 classes)."""
        return OFAConfig(
            width_mult=self.width_mult, num_classes=NUM_CLASSES, in_channels=IN_CHANNELS
        )

    def input_size(self, resolution: int) -> int:
        """Pixels per side at which an architecture of ``resolution`` (128..224) runs."""
        if not self.scale_resolution:
            return self.resolution
        return max(4, round(self.resolution * resolution / RESOLUTIONS[-1]))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> OFATrainSettings:
        """Settings from :meth:`to_json`; unknown keys raise :class:`InvalidInputError`."""
        if not isinstance(d, dict):
            raise InvalidInputError("training settings must be a JSON object; re-save the oracle")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InvalidInputError(
                f"unknown training settings {', '.join(unknown)}; re-save the oracle with this "
                "hilnas version"
            )
        return cls(**d)


# ----------------------------------------------------------------------------------------------
# a faster depthwise convolution for small feature maps
# ----------------------------------------------------------------------------------------------
def build_supernet(settings: OFATrainSettings):
    """A fresh :class:`~.supernet.OFASupernet` for ``settings`` (seeded initial weights) whose
    layer slots crop their depthwise kernels to the input
    (:attr:`~.supernet.ElasticMBConv.crop_to_input`: same weights and outputs, faster)."""
    net = OFAMobileNetV3().build_supernet(settings.model_config(), seed=settings.seed)
    for slots in net.stages:
        for slot in slots:
            if isinstance(slot, ElasticMBConv):
                slot.crop_to_input = True
    return net


# ----------------------------------------------------------------------------------------------
# subnet sampling
# ----------------------------------------------------------------------------------------------
def largest_code(space: OFAMobileNetV3) -> tuple[int, ...]:
    """The largest subnet: resolution 224, depth 4, kernel 7, expand 6 everywhere."""
    return space.canonical(tuple(k - 1 for k in space.option_counts))


def smallest_code(space: OFAMobileNetV3) -> tuple[int, ...]:
    """The smallest subnet: resolution 128, depth 2, kernel 3, expand 3 everywhere."""
    return space.canonical((0,) * space.num_decisions)


def _random_code(space: OFAMobileNetV3, rng: np.random.Generator) -> tuple[int, ...]:
    return space.canonical(tuple(int(rng.integers(k)) for k in space.option_counts))


def _fair_codes(space: OFAMobileNetV3, rng: np.random.Generator) -> list[tuple[int, ...]]:
    counts = space.option_counts
    m = 3  # every decision but the resolution has 3 options
    columns = []
    for k in counts:
        if k == m:
            columns.append(rng.permutation(m))
        else:
            columns.append(rng.choice(k, size=m, replace=False))
    return [space.canonical(tuple(int(c[i]) for c in columns)) for i in range(m)]


def step_codes(
    space: OFAMobileNetV3, settings: OFATrainSettings, rng: np.random.Generator
) -> list[tuple[int, ...]]:
    """The subnets of one training step (the largest first in sandwich mode)."""
    if settings.sampling == "fair":
        return _fair_codes(space, rng)
    codes = [largest_code(space), smallest_code(space)]
    codes += [_random_code(space, rng) for _ in range(settings.random_subnets)]
    return codes


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------
def _resolution(code: Sequence[int]) -> int:
    return RESOLUTIONS[code[RES_POS]]


def _check_data(data) -> None:
    if getattr(data, "in_channels", None) != IN_CHANNELS or data.num_classes != NUM_CLASSES:
        raise InvalidInputError(
            f"the OFA MNIST trainer needs 1-channel images of 10 classes, got "
            f"{getattr(data, 'in_channels', '?')} channels and "
            f"{getattr(data, 'num_classes', '?')} classes; pass load_mnist(...) or data=None"
        )


def _train(
    settings: OFATrainSettings,
    data,
    codes_for_step: Callable[[np.random.Generator], list[tuple[int, ...]]],
    distill: bool,
    progress: Callable[[int, float], None] | None,
):
    """Train a fresh supernet; returns (supernet, per-epoch mean loss, steps)."""
    import torch
    import torch.nn.functional as F
    from hilnas.pipeline.supernet import weight_optimizer

    space = OFAMobileNetV3()
    net = build_supernet(settings)
    x_all, y_all = data.train_x, data.train_y
    n = len(y_all)
    batch = min(settings.batch_size, n)
    steps = max(1, n // batch)
    total_steps = settings.epochs * steps
    if settings.optimizer == "adam":
        opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=3e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_steps))
    else:
        opt, sched = weight_optimizer(net, settings.lr, total_steps)
    gen = torch.Generator().manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    one_hots: dict[tuple[int, ...], torch.Tensor] = {}

    def one_hot(code: tuple[int, ...]) -> torch.Tensor:
        if code not in one_hots:
            if len(one_hots) > 4096:
                one_hots.clear()
            one_hots[code] = torch.from_numpy(space.one_hot(code))
        return one_hots[code]

    history: list[float] = []
    net.train()
    for epoch in range(settings.epochs):
        perm = torch.randperm(n, generator=gen)
        losses = []
        for s in range(steps):
            idx = perm[s * batch : (s + 1) * batch]
            xb, yb = x_all[idx], y_all[idx]
            codes = codes_for_step(rng)
            opt.zero_grad(set_to_none=True)
            teacher = None
            total = 0.0
            for i, code in enumerate(codes):
                xr = resize_images(xb, settings.input_size(_resolution(code)))
                logits = net(xr, one_hot(code))
                if distill and i > 0 and teacher is not None:
                    loss = F.kl_div(
                        F.log_softmax(logits, 1), teacher, reduction="batchmean", log_target=False
                    )
                else:
                    loss = F.cross_entropy(logits, yb)
                    if distill and i == 0:
                        teacher = F.softmax(logits.detach(), 1)
                (loss / len(codes)).backward()
                total += float(loss.detach()) / len(codes)
            opt.step()
            sched.step()
            if not np.isfinite(total):
                raise InvalidInputError(
                    f"training diverged (loss {total}) at epoch {epoch + 1}; lower lr "
                    f"(now {settings.lr:g})"
                )
            losses.append(total)
        history.append(float(np.mean(losses)))
        if progress is not None:
            progress(epoch + 1, history[-1])
    net.eval()
    return net, history, steps


def train_ofa_supernet(
    settings: OFATrainSettings | None = None,
    data=None,
    progress: Callable[[int, float], None] | None = None,
) -> OFASupernetOracle:
    """Train the reduced OFA supernet on MNIST and return its error oracle.

    ``data``: a :class:`~hilnas.pipeline.datasets.DatasetSplits` of 1-channel, 10-class images
    (default: :func:`~.mnist.load_mnist` with ``settings.data_seed`` and ``settings.images``).
    ``progress(epoch, mean_loss)`` is called after every epoch. Deterministic for given
    settings and data on one machine (torch's CPU kernels). Raises
    :class:`InvalidInputError` for data of another shape or a diverged training.
    """
    settings = settings or OFATrainSettings()
    if not isinstance(settings, OFATrainSettings):
        raise InvalidInputError(
            f"settings must be OFATrainSettings, got {type(settings).__name__}; build one"
        )
    if data is None:
        data = load_mnist(seed=settings.data_seed, images=settings.images)
    _check_data(data)
    space = OFAMobileNetV3()
    start = time.perf_counter()
    with torch_threads():
        net, history, steps = _train(
            settings,
            data,
            lambda rng: step_codes(space, settings, rng),
            settings.distill and settings.sampling == "sandwich",
            progress,
        )
    wall = time.perf_counter() - start
    return OFASupernetOracle(
        net,
        settings,
        data,
        {"wall_s": wall, "loss_per_epoch": history, "steps_per_epoch": steps},
    )


def train_standalone(
    code: Sequence[int],
    settings: OFATrainSettings | None = None,
    data=None,
) -> dict[str, float]:
    """Train one architecture alone (no weight sharing: a fresh supernet always running
    ``code``) with the same settings; returns its ``val_error`` and ``test_error`` in [0, 1].

    The check of how far the shared weights' ranking can be trusted. Raises what
    :func:`train_ofa_supernet` raises, and :class:`ArchitectureError` for a code out of the
    space.
    """
    settings = settings or OFATrainSettings()
    if data is None:
        data = load_mnist(seed=settings.data_seed, images=settings.images)
    _check_data(data)
    space = OFAMobileNetV3()
    c = space.canonical(code)
    start = time.perf_counter()
    net, history, steps = _train(settings, data, lambda rng: [c], False, None)
    oracle = OFASupernetOracle(
        net,
        settings,
        data,
        {
            "wall_s": time.perf_counter() - start,
            "loss_per_epoch": history,
            "steps_per_epoch": steps,
        },
    )
    return {
        "val_error": float(oracle.error([c])[0]),
        "test_error": float(oracle.test_error([c])[0]),
    }


# ----------------------------------------------------------------------------------------------
# the oracle
# ----------------------------------------------------------------------------------------------
def _data_fingerprint(data) -> str:
    h = hashlib.sha256()
    for name in ("val_x", "val_y", "test_x", "test_y"):
        t = getattr(data, name).contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class OFASupernetOracle:
    """Top-1 error of OFA subnets with the shared weights of one trained supernet.

    ``error(codes)`` (validation split) and ``test_error(codes)`` (test split) return one error
    in [0, 1] per architecture code of the ``ofa_mbv3`` space; results are cached per
    canonical code, so asking again is free. ``supernet`` is the trained
    :class:`~.supernet.OFASupernet` (eval mode; batch-statistics BN) for callers that need
    gradients through it.
    """

    space_name = OFAMobileNetV3.name

    def __init__(self, supernet, settings: OFATrainSettings, data, info: dict[str, Any]):
        self.supernet = supernet
        self.settings = settings
        self.data = data
        self.info = dict(info)
        self.space = OFAMobileNetV3()
        self._cache: dict[tuple[str, tuple[int, ...]], float] = {}
        self._inputs: dict[tuple[str, int], Any] = {}

    # ----- errors ---------------------------------------------------------------------------
    def _split_input(self, split: str, size: int):
        key = (split, size)
        if key not in self._inputs:
            self._inputs[key] = resize_images(getattr(self.data, f"{split}_x"), size)
        return self._inputs[key]

    def _errors(self, codes: Sequence[Sequence[int]], split: str) -> np.ndarray:
        import torch

        if isinstance(codes, (str, bytes)) or not hasattr(codes, "__len__"):
            raise InvalidInputError(
                "codes must be a sequence of architecture codes (each 46 option indices); "
                "wrap a single code in a list"
            )
        canon = [self.space.canonical(c) for c in codes]
        y = getattr(self.data, f"{split}_y")
        bs = self.settings.eval_batch_size
        out = np.empty(len(canon), dtype=np.float64)
        with torch.inference_mode():
            for i, code in enumerate(canon):
                key = (split, code)
                if key not in self._cache:
                    x = self._split_input(split, self.settings.input_size(_resolution(code)))
                    a = torch.from_numpy(self.space.one_hot(code))
                    wrong = 0
                    for j in range(0, len(y), bs):
                        pred = self.supernet(x[j : j + bs], a).argmax(1)
                        wrong += int((pred != y[j : j + bs]).sum())
                    self._cache[key] = wrong / max(1, len(y))
                out[i] = self._cache[key]
        return out

    def error(self, codes: Sequence[Sequence[int]]) -> np.ndarray:
        """Top-1 validation error in [0, 1] of each code, shape ``(len(codes),)`` float64.

        Raises :class:`ArchitectureError` (an :class:`InvalidInputError`) for a code that is not
        in the ``ofa_mbv3`` space.
        """
        with torch_threads():
            return self._errors(codes, "val")

    def test_error(self, codes: Sequence[Sequence[int]]) -> np.ndarray:
        """Top-1 test error in [0, 1] of each code (report only; search with :meth:`error`)."""
        with torch_threads():
            return self._errors(codes, "test")

    # ----- description ------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Dataset, reduced width and resolution, epochs, sampling and wall time of training."""
        s = self.settings
        sizes = sorted({s.input_size(r) for r in RESOLUTIONS})
        return {
            "space": self.space_name,
            "objective": "top-1 error of a subnet with the shared supernet weights",
            "dataset": self.data.describe(),
            "width_mult": s.width_mult,
            "full_width_mult": OFAConfig().width_mult,
            "resolution": s.resolution,
            "scale_resolution": s.scale_resolution,
            "input_sizes": [sizes[0], sizes[-1]],
            "epochs": s.epochs,
            "batch_size": s.batch_size,
            "optimizer": s.optimizer,
            "lr": s.lr,
            "sampling": s.sampling,
            "random_subnets": s.random_subnets if s.sampling == "sandwich" else None,
            "distill": s.distill and s.sampling == "sandwich",
            "seed": s.seed,
            "wall_s": self.info.get("wall_s"),
            "steps_per_epoch": self.info.get("steps_per_epoch"),
            "loss_per_epoch": self.info.get("loss_per_epoch"),
            "note": (
                "reduced width and resolution on MNIST: a proxy of the accuracy ranking; the "
                "latency objective stays that of the full network"
            ),
        }

    # ----- persistence --------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``supernet.safetensors`` and ``oracle.json`` (settings, space, sha256 of the
        weights, dataset fingerprint, training info) into ``directory``; returns it."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        weights = d / WEIGHTS_FILE
        state = {k: v.detach().contiguous().cpu() for k, v in self.supernet.state_dict().items()}
        save_file(state, str(weights), metadata={"format": FORMAT, "space": self.space_name})
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "space": self.space_name,
            "config": {
                "width_mult": self.settings.width_mult,
                "num_classes": NUM_CLASSES,
                "in_channels": IN_CHANNELS,
            },
            "settings": self.settings.to_json(),
            "weights_file": WEIGHTS_FILE,
            "weights_sha256": _sha256_file(weights),
            "dataset": self.data.describe(),
            "data_sha256": _data_fingerprint(self.data),
            "info": self.info,
        }
        tmp = d / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        tmp.replace(d / META_FILE)
        return d

    @classmethod
    def load(cls, directory: str | Path, data=None) -> OFASupernetOracle:
        """An oracle saved by :meth:`save`. ``data``: the splits it was trained with (default:
        the MNIST sample with the saved settings, which is what training used by default).

        Raises :class:`NotFoundError` for a missing directory or file,
        :class:`DataIntegrityError` for a damaged or foreign file, a weights checksum mismatch,
        another space, or data other than the saved ones, and :class:`PreconditionError` when
        the saved oracle was trained on other data and ``data`` is not given.
        """
        from safetensors.torch import load_file

        d = Path(directory)
        meta_path, weights = d / META_FILE, d / WEIGHTS_FILE
        for p in (meta_path, weights):
            if not p.is_file():
                raise NotFoundError(f"{p} is missing; pass a directory written by oracle.save()")
        fix = "retrain with train_ofa_supernet(...) and save it again"
        try:
            meta = json.loads(meta_path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataIntegrityError(f"{meta_path} is not valid JSON; {fix}") from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise DataIntegrityError(f"{meta_path} is not an OFA supernet oracle; {fix}")
        if meta.get("version") != FORMAT_VERSION:
            raise DataIntegrityError(
                f"{meta_path} has format version {meta.get('version')!r}, this hilnas reads "
                f"{FORMAT_VERSION}; {fix}"
            )
        if meta.get("space") != cls.space_name:
            raise DataIntegrityError(
                f"{meta_path} is for space {meta.get('space')!r}, not {cls.space_name}; {fix}"
            )
        if _sha256_file(weights) != meta.get("weights_sha256"):
            raise DataIntegrityError(
                f"{weights} does not match the sha256 recorded in {META_FILE} (damaged or "
                f"replaced); {fix}"
            )
        try:
            settings = OFATrainSettings.from_json(meta.get("settings"))
        except (InvalidInputError, TypeError) as exc:
            raise DataIntegrityError(f"{meta_path} holds invalid settings ({exc}); {fix}") from exc
        if data is None:
            if (meta.get("dataset") or {}).get("name") != MNIST_NAME:
                raise PreconditionError(
                    f"{meta_path} was trained on {(meta.get('dataset') or {}).get('name')!r}, "
                    "not the shipped MNIST sample; pass its data to OFASupernetOracle.load"
                )
            data = load_mnist(seed=settings.data_seed, images=settings.images)
        if _data_fingerprint(data) != meta.get("data_sha256"):
            raise DataIntegrityError(
                f"the validation/test data differ from those {d} was trained with; pass the "
                "same splits (or the shipped MNIST file unchanged)"
            )
        net = build_supernet(settings)
        try:
            state = load_file(str(weights))
            net.load_state_dict(state, strict=True)
        except Exception as exc:  # safetensors header or shape errors: a damaged file
            raise DataIntegrityError(
                f"{weights} does not hold this supernet's weights ({type(exc).__name__}); {fix}"
            ) from exc
        net.eval()
        info = meta.get("info") if isinstance(meta.get("info"), dict) else {}
        return cls(net, settings, data, info)
