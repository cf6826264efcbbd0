"""HW-GPT-Bench's MLP surrogates for GPT-S as numpy oracles: perplexity, latency and energy.

21 small MLPs (input -> 128 -> 128 -> 128 -> 128 -> 1, ReLU, linear output), the float32 weights
shipped unchanged in ``data/surrogates.npz`` (sources and licence in ``data/README.md``):

- ``perplexity``: OpenWebText validation perplexity of the sub-network with the weights of
  HW-GPT-Bench's trained weight-sharing supernet; input ``ppl_onehot_80``.
- ``latency_<device>`` and ``energy_<device>`` for the 10 :data:`DEVICES`; input
  ``hw_scalar_27``, whose last input is always 1.0 (the MLPs were trained blind to ``bias``).

Units: latency in ms and energy in mJ (the source's Wh x 3.6e6), both **per forward pass of one
batch of 8 x 1,024 tokens** (:data:`~.space.SOURCE_CONFIG` with batch 8: a prefill with logits at every
position, no cache), as HW-GPT-Bench measured them. Outputs are computed in float64 from the
float32 weights, which reproduces the source's ``sample.csv`` to ~1e-12.

Invalid energies: the energy MLPs extrapolate badly for the smallest models and some predict
energies <= 0 (73 of 3,000 sampled architectures on P100). :meth:`GPTSurrogates.energy_mj`
returns NaN for those, never a number, and :attr:`Prediction.energy_valid` flags them; the raw
outputs stay available through :meth:`GPTSurrogates.raw`.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hilnas.devices.errors import DataIntegrityError, NotFoundError
from hilnas.pipeline.spaces.base import ArchitectureError
from hilnas.pipeline.spaces.gpt_s.space import (
    BIAS,
    EMBED,
    EMBED_CHOICES,
    HEAD_CHOICES,
    HEADS0,
    LAYER_CHOICES,
    LAYERS,
    MAX_LAYERS,
    MLP0,
    MLP_RATIO_CHOICES,
    NUM_DECISIONS,
    GPTSpace,
)

DATA_DIR = Path(__file__).with_name("data")
SURROGATES_FILE = DATA_DIR / "surrogates.npz"

#: HW-GPT-Bench's device names, in its order: 6 GPUs, then 4 server CPUs.
DEVICES: tuple[str, ...] = (
    "a100",
    "rtx2080",
    "rtx3080",
    "a6000",
    "v100",
    "P100",
    "cpu_xeon_silver",
    "cpu_xeon_gold",
    "cpu_amd_7502",
    "cpu_amd_7452",
)
GPU_DEVICES: tuple[str, ...] = DEVICES[:6]
CPU_DEVICES: tuple[str, ...] = DEVICES[6:]
MODEL_NAMES: tuple[str, ...] = (
    "perplexity",
    *(f"latency_{d}" for d in DEVICES),
    *(f"energy_{d}" for d in DEVICES),
)
#: 1 Wh = 3,600 J = 3.6e6 mJ.
MJ_PER_WH = 3.6e6


def codes_array(archs: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    """``(n, 27)`` int64 array of canonical GPT-S codes, checked in one vectorised pass.

    Raises :class:`ArchitectureError` for a wrong shape or an option out of range; decisions of
    blocks beyond ``layers`` are set to 0 (they do not exist, as ``GPTSpace.canonical`` says).
    """
    a = np.asarray(archs)
    if a.ndim == 1 and a.size == NUM_DECISIONS:
        a = a[None]
    if a.ndim != 2 or a.shape[1] != NUM_DECISIONS or not np.issubdtype(a.dtype, np.integer):
        raise ArchitectureError(
            f"gpt_s: expected architecture codes of {NUM_DECISIONS} integers each, got an array "
            f"of shape {a.shape} and dtype {a.dtype}; use GPTSpace.parse/encode to build them"
        )
    a = a.astype(np.int64)
    high = np.full(NUM_DECISIONS, 3)
    high[BIAS] = 2
    if (a < 0).any() or (a >= high).any():
        row = int(np.argwhere((a < 0) | (a >= high))[0, 0])
        GPTSpace().validate(a[row])  # raises with the precise message
    a[~_active_matrix(a[:, LAYERS])] = 0
    return a


def _active_matrix(layers_option: np.ndarray) -> np.ndarray:
    n_layers = np.asarray(LAYER_CHOICES)[layers_option]
    slot = np.arange(MAX_LAYERS)
    live = slot[None, :] < n_layers[:, None]
    active = np.ones((len(layers_option), NUM_DECISIONS), dtype=bool)
    active[:, MLP0:HEADS0] = live
    active[:, HEADS0:BIAS] = live
    return active


def ppl_onehot_80(codes: np.ndarray) -> np.ndarray:
    """The perplexity MLP's input: one-hot embed (3), layers (3), mlp_ratio of slots 0..11
    (12 x 3, slot-major), heads of slots 0..11 (12 x 3), bias (2: true, false); inactive slots
    all-zero. Equal to ``GPTSpace.one_hot`` flattened over the real options."""
    c = codes_array(codes)
    n = len(c)
    out = np.zeros((n, 80))
    rows = np.arange(n)
    out[rows, c[:, EMBED]] = 1.0
    out[rows, 3 + c[:, LAYERS]] = 1.0
    active = _active_matrix(c[:, LAYERS])
    for i in range(MAX_LAYERS):
        live = active[:, MLP0 + i]
        out[rows[live], 6 + 3 * i + c[live, MLP0 + i]] = 1.0
        out[rows[live], 42 + 3 * i + c[live, HEADS0 + i]] = 1.0
    out[rows, 78 + c[:, BIAS]] = 1.0
    return out


def hw_scalar_27(codes: np.ndarray) -> np.ndarray:
    """The latency/energy MLPs' input: ``[(embed-192)/576, (layers-10)/2, (mlp_ratio[i]-2)/2
    for 12 slots, (heads[i]-4)/8 for 12 slots, 1.0]``, 0.0 for inactive slots. The last input
    is 1.0 whatever ``bias`` is: the MLPs were only ever trained on 1.0 (HW-GPT-Bench parsed the
    flag with ``bool("False") == True``), and 0.0 is out of their distribution."""
    c = codes_array(codes)
    out = np.zeros((len(c), 27))
    out[:, 0] = (np.asarray(EMBED_CHOICES, dtype=float)[c[:, EMBED]] - 192) / 576
    out[:, 1] = (np.asarray(LAYER_CHOICES, dtype=float)[c[:, LAYERS]] - 10) / 2
    active = _active_matrix(c[:, LAYERS])
    mlp = (np.asarray(MLP_RATIO_CHOICES, dtype=float)[c[:, MLP0:HEADS0]] - 2) / 2
    heads = (np.asarray(HEAD_CHOICES, dtype=float)[c[:, HEADS0:BIAS]] - 4) / 8
    out[:, 2:14] = np.where(active[:, MLP0:HEADS0], mlp, 0.0)
    out[:, 14:26] = np.where(active[:, HEADS0:BIAS], heads, 0.0)
    out[:, 26] = 1.0
    return out


@dataclass(frozen=True, slots=True)
class Prediction:
    """Surrogate outputs for ``n`` architectures; device columns follow :data:`DEVICES`.

    ``latency_ms`` and ``energy_mj`` are per forward pass of 8 x 1,024 tokens. ``energy_mj`` is
    NaN where the surrogate predicted <= 0 (``energy_valid`` False there).
    """

    perplexity: np.ndarray  # (n,)
    latency_ms: np.ndarray  # (n, 10)
    energy_mj: np.ndarray  # (n, 10), NaN where invalid
    energy_valid: np.ndarray  # (n, 10) bool
    devices: tuple[str, ...] = DEVICES


class GPTSurrogates:
    """The 21 MLPs, evaluated in float64. Thread-safe (read-only arrays, pure functions)."""

    def __init__(self, weights: dict[str, dict[str, np.ndarray]], sha256: str = "") -> None:
        missing = [m for m in MODEL_NAMES if m not in weights]
        if missing:
            raise DataIntegrityError(
                f"GPT-S surrogate weights lack {', '.join(missing)}; rebuild them with "
                "`python -m hilnas.pipeline.spaces.gpt_s.derive ../shared/data/gpt_s`"
            )
        self._layers = {
            name: [
                (
                    weights[name][f"fc{k}.weight"].astype(np.float64).T,
                    weights[name][f"fc{k}.bias"].astype(np.float64),
                )
                for k in range(1, 6)
            ]
            for name in MODEL_NAMES
        }
        self.sha256 = sha256

    # ----- raw model outputs ------------------------------------------------------------
    def raw(self, model: str, archs: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
        """``(n,)`` output of one model in its source unit (perplexity, ms, **Wh**), unfiltered.

        Energies may be <= 0 here; use :meth:`energy_mj` for values fit for a search.
        """
        if model not in self._layers:
            raise NotFoundError(f"no GPT-S surrogate {model!r}; known: {', '.join(MODEL_NAMES)}")
        x = ppl_onehot_80(archs) if model == "perplexity" else hw_scalar_27(archs)
        return self._forward(model, x)

    def _forward(self, model: str, x: np.ndarray) -> np.ndarray:
        layers = self._layers[model]
        for w, b in layers[:-1]:
            x = np.maximum(x @ w + b, 0.0)
        w, b = layers[-1]
        return (x @ w + b)[:, 0]

    # ----- objectives in the project's units ----------------------------------------------
    def perplexity(self, archs: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
        """Predicted OpenWebText perplexity (supernet weights), ``(n,)``."""
        return self.raw("perplexity", archs)

    def latency_ms(self, archs: Sequence[Sequence[int]] | np.ndarray, device: str) -> np.ndarray:
        """Predicted latency (ms per forward pass of 8 x 1,024 tokens) on one device, ``(n,)``."""
        return self.raw(f"latency_{_device(device)}", archs)

    def energy_mj(self, archs: Sequence[Sequence[int]] | np.ndarray, device: str) -> np.ndarray:
        """Predicted energy (mJ per forward pass of 8 x 1,024 tokens), NaN where the MLP
        predicts <= 0 (invalid: never a value to rank or fit on)."""
        wh = self.raw(f"energy_{_device(device)}", archs)
        return np.where(wh > 0, wh * MJ_PER_WH, np.nan)

    def predict(self, archs: Sequence[Sequence[int]] | np.ndarray) -> Prediction:
        """Every objective on every device for ``n`` architectures (one encoding pass)."""
        ppl_x = ppl_onehot_80(archs)
        hw_x = hw_scalar_27(archs)
        lat = np.stack([self._forward(f"latency_{d}", hw_x) for d in DEVICES], axis=1)
        wh = np.stack([self._forward(f"energy_{d}", hw_x) for d in DEVICES], axis=1)
        valid = wh > 0
        return Prediction(
            perplexity=self._forward("perplexity", ppl_x),
            latency_ms=lat,
            energy_mj=np.where(valid, wh * MJ_PER_WH, np.nan),
            energy_valid=valid,
        )


def _device(device: str) -> str:
    if device not in DEVICES:
        raise NotFoundError(
            f"no GPT-S reference device {device!r}; known: {', '.join(DEVICES)} "
            "(all have latency and energy surrogates)"
        )
    return device


@functools.lru_cache(maxsize=1)
def load_surrogates(path: str | Path = SURROGATES_FILE) -> GPTSurrogates:
    """The shipped surrogates (cached)."""
    path = Path(path)
    if not path.exists():
        raise NotFoundError(
            f"GPT-S surrogate weights {path} are missing; reinstall hilnas or rebuild them with "
            "`python -m hilnas.pipeline.spaces.gpt_s.derive ../shared/data/gpt_s`"
        )
    blob = path.read_bytes()
    weights: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            model, _, tensor = key.partition("/")
            weights.setdefault(model, {})[tensor] = z[key]
    return GPTSurrogates(weights, sha256=hashlib.sha256(blob).hexdigest())
