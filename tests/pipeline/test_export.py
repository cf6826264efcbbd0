"""The content-addressed ONNX exporter: keys, cache hits, atomicity, corruption, fallback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from hilnas.devices.errors import PreconditionError, ResourceError
from hilnas.pipeline import export as export_mod
from hilnas.pipeline.export import (
    DIRECT,
    EXPORTER_ID,
    TORCH,
    ExportedModel,
    ExportError,
    OnnxExporter,
    export_key,
    file_sha256,
    load_exported,
    read_sidecar,
)
from hilnas.pipeline.spaces import ArchitectureError, ModelConfig, SearchSpace, get_space

SMALL = ModelConfig(channels=4, cells_per_stage=1, input_size=8, in_channels=1, num_classes=3)
ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


@pytest.fixture(scope="module")
def space():
    return get_space("nb201")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def exporter(tmp_path):
    return OnnxExporter(cache_dir=tmp_path / "cache")


def _session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class TinySpace(SearchSpace):
    """A two-decision space without a direct builder: exercises the torch.onnx.export fallback."""

    name = "tiny"

    @property
    def decisions(self):
        return ("kernel", "act")

    @property
    def options(self):
        return (("k1", "k3"), ("relu", "tanh"))

    def parse(self, text: str):
        try:
            k, a = text.split("-")
            return self.validate((self.options[0].index(k), self.options[1].index(a)))
        except ValueError as exc:
            raise ArchitectureError(f"tiny: bad architecture {text!r}, e.g. 'k3-relu'") from exc

    def format(self, arch: Sequence[int]) -> str:
        k, a = self.validate(arch)
        return f"{self.options[0][k]}-{self.options[1][a]}"

    def index(self, arch):
        k, a = self.validate(arch)
        return 2 * k + a

    def from_index(self, index):
        return (index // 2, index % 2)

    def reference_architectures(self):
        return [(0, 0)]

    def build_model(self, arch, config=None):
        k, a = self.validate(arch)
        cfg = config or self.default_model_config()
        gen = torch.random.get_rng_state()
        torch.manual_seed(0)
        try:
            kernel = (1, 3)[k]
            return torch.nn.Sequential(
                torch.nn.Conv2d(cfg.in_channels, cfg.channels, kernel, padding=kernel // 2),
                torch.nn.BatchNorm2d(cfg.channels),
                (torch.nn.ReLU(), torch.nn.Tanh())[a],
                torch.nn.AdaptiveAvgPool2d(1),
                torch.nn.Flatten(),
                torch.nn.Linear(cfg.channels, cfg.num_classes),
            ).eval()
        finally:
            torch.random.set_rng_state(gen)


# ----- keys -------------------------------------------------------------------------------------


def test_key_is_stable_and_sensitive_to_every_field(space):
    base = export_key(space, ARCH, batch_size=1, config=SMALL, opset=17)
    assert len(base) == 64 and int(base, 16) >= 0
    code = space.parse(ARCH)
    # the same subnet, however it is named
    assert export_key(space, code, batch_size=1, config=SMALL, opset=17) == base
    assert export_key(space, space.index(code), batch_size=1, config=SMALL, opset=17) == base
    others = {
        export_key(space, (3,) * 6, batch_size=1, config=SMALL, opset=17),
        export_key(space, ARCH, batch_size=2, config=SMALL, opset=17),
        export_key(space, ARCH, batch_size=1, config=ModelConfig(), opset=17),
        export_key(space, ARCH, batch_size=1, config=SMALL, opset=18),
        export_key(TinySpace(), (0, 0), batch_size=1, config=SMALL, opset=17),
    }
    assert base not in others and len(others) == 5


def test_key_includes_the_exporter_version(space, monkeypatch):
    before = export_key(space, ARCH, config=SMALL)
    monkeypatch.setattr(export_mod, "EXPORTER_ID", "hilnas.export/999")
    assert export_key(space, ARCH, config=SMALL) != before


# ----- export and cache -------------------------------------------------------------------------


def test_export_then_hit(space, exporter):
    first = exporter.export(space, ARCH, config=SMALL)
    assert isinstance(first, ExportedModel)
    assert not first.cached and first.exporter == DIRECT and first.opset == 17
    assert first.path == exporter.cache_dir / first.key[:2] / f"{first.key}.onnx"
    assert first.path.is_file() and first.sha256 == file_sha256(first.path)
    assert first.key == exporter.key(space, ARCH, config=SMALL)

    second = exporter.export(space, space.parse(ARCH), config=SMALL)
    assert second.cached and second.path == first.path and second.sha256 == first.sha256
    assert second.exporter == DIRECT
    # the file runs and matches the torch module
    x = np.random.default_rng(0).standard_normal(SMALL.input_shape(1)).astype(np.float32)
    got = _session(first.path).run(["logits"], {"input": x})[0]
    with torch.no_grad():
        want = space.build_model(space.parse(ARCH), SMALL)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_sidecar_contents(space, exporter):
    m = exporter.export(space, ARCH, batch_size=2, config=SMALL)
    meta = read_sidecar(m.path)
    assert meta == read_sidecar(m.path.with_suffix(".json"))
    assert meta["key"] == m.key and meta["sha256"] == m.sha256
    assert meta["space"] == "nb201" and meta["arch"] == ARCH
    assert meta["config_key"] == SMALL.key() and meta["config"]["channels"] == 4
    assert meta["batch_size"] == 2 and meta["opset"] == 17
    assert meta["input_shape"] == [2, 1, 8, 8]
    assert meta["exporter"] == DIRECT and meta["exporter_id"] == EXPORTER_ID
    assert meta["size_bytes"] == m.path.stat().st_size
    assert meta["versions"]["torch"] == torch.__version__
    assert meta["versions"]["onnx"] == onnx.__version__
    model = onnx.load(str(m.path))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["hilnas.arch"] == ARCH and props["hilnas.config"] == SMALL.key()
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [2, 1, 8, 8]


def test_bytes_are_deterministic_across_caches(space, tmp_path):
    a = OnnxExporter(cache_dir=tmp_path / "a").export(space, ARCH, config=SMALL)
    b = OnnxExporter(cache_dir=tmp_path / "b").export(space, ARCH, config=SMALL)
    assert a.key == b.key and a.sha256 == b.sha256


def test_distinct_settings_are_distinct_files(space, exporter, tmp_path):
    a = exporter.export(space, ARCH, config=SMALL)
    b = exporter.export(space, ARCH, config=SMALL, batch_size=3)
    c = OnnxExporter(cache_dir=exporter.cache_dir, opset=18).export(space, ARCH, config=SMALL)
    assert len({a.path, b.path, c.path}) == 3
    assert onnx.load(str(c.path)).opset_import[0].version == 18
    assert c.opset == 18


def test_default_cache_dir_is_under_hilnas_home(space, hilnas_home):
    m = OnnxExporter().export(space, ARCH, config=SMALL)
    assert m.path.is_relative_to(hilnas_home / "onnx")


def test_force_reexports(space, exporter):
    a = exporter.export(space, ARCH, config=SMALL)
    b = exporter.export(space, ARCH, config=SMALL, force=True)
    assert not b.cached and b.sha256 == a.sha256


def test_corrupt_file_is_detected_and_reexported(space, exporter, caplog):
    a = exporter.export(space, ARCH, config=SMALL)
    data = a.path.read_bytes()
    a.path.write_bytes(data[: len(data) // 2])  # a truncated file under the final name
    with pytest.raises(ExportError, match="corrupt"):
        load_exported(a.path)
    assert exporter.lookup(space, ARCH, config=SMALL) is None
    b = exporter.export(space, ARCH, config=SMALL)
    assert not b.cached and b.sha256 == a.sha256 and file_sha256(b.path) == a.sha256
    assert "unusable" in caplog.text


def test_missing_or_bad_sidecar_is_a_miss(space, exporter):
    a = exporter.export(space, ARCH, config=SMALL)
    side = a.path.with_suffix(".json")
    side.unlink()  # as after a kill between the two renames
    with pytest.raises(ExportError, match="not a complete hilnas export"):
        load_exported(a.path)
    b = exporter.export(space, ARCH, config=SMALL)
    assert not b.cached and side.is_file()
    side.write_text("{not json")
    with pytest.raises(ExportError, match="cannot read export sidecar"):
        read_sidecar(a.path)
    assert not exporter.export(space, ARCH, config=SMALL).cached
    side.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ExportError, match="not a hilnas export sidecar"):
        read_sidecar(side)
    assert not exporter.export(space, ARCH, config=SMALL).cached
    assert exporter.export(space, ARCH, config=SMALL).cached


def test_load_exported_without_verify_and_missing_file(space, exporter):
    a = exporter.export(space, ARCH, config=SMALL)
    got = load_exported(a.path.with_suffix(".json"), verify=False)
    assert got.key == a.key and got.cached and got.path == a.path
    a.path.unlink()
    with pytest.raises(ExportError, match="missing"):
        load_exported(a.path.with_suffix(".json"))


def test_killed_writer_leaves_no_partial_file(space, exporter, monkeypatch):
    """A write that dies mid-way leaves neither a final file nor its temp file."""
    real_fdopen = os.fdopen

    class Boom(Exception):
        pass

    def dying_fdopen(fd, mode="r", *args, **kwargs):
        fh = real_fdopen(fd, mode, *args, **kwargs)
        real_write = fh.write

        def write(data):
            real_write(data[: len(data) // 3])
            raise Boom("killed")

        fh.write = write
        return fh

    monkeypatch.setattr(export_mod.os, "fdopen", dying_fdopen)
    with pytest.raises(Boom):
        exporter.export(space, ARCH, config=SMALL)
    monkeypatch.undo()
    key = exporter.key(space, ARCH, config=SMALL)
    directory = exporter.path_for(key).parent
    assert list(directory.iterdir()) == []
    assert not exporter.export(space, ARCH, config=SMALL).cached


@pytest.mark.parametrize("stage", [".onnx", ".json"])
def test_sigkill_before_rename_then_rerun(space, tmp_path, stage):
    """A real SIGKILL just before the model's (or the sidecar's) rename: no final file is
    partial, the entry is not taken as cached, and a rerun completes it."""
    cache = tmp_path / "cache"
    script = textwrap.dedent(
        f"""
        import os, signal
        from hilnas.pipeline.spaces import ModelConfig, get_space
        from hilnas.pipeline import export as m
        real_replace = os.replace
        def replace(src, dst):
            if str(dst).endswith({stage!r}):
                os.kill(os.getpid(), signal.SIGKILL)
            real_replace(src, dst)
        os.replace = replace
        cfg = ModelConfig(channels=4, cells_per_stage=1, input_size=8, in_channels=1, num_classes=3)
        m.OnnxExporter(cache_dir={str(cache)!r}).export(get_space("nb201"), {ARCH!r}, config=cfg)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -9, proc.stderr
    finals = sorted(p.suffix for p in cache.rglob("*") if p.is_file() and p.name[0] != ".")
    assert finals == ([] if stage == ".onnx" else [".onnx"])
    temps = [p for p in cache.rglob(".*.tmp")]
    assert len(temps) == 1  # the killed writer's complete temp file, never under a final name
    exporter = OnnxExporter(cache_dir=cache)
    assert exporter.lookup(space, ARCH, config=SMALL) is None
    m = exporter.export(space, ARCH, config=SMALL)
    assert not m.cached and file_sha256(m.path) == m.sha256
    assert exporter.export(space, ARCH, config=SMALL).cached


def test_stale_temp_files_are_cleaned(space, exporter):
    key = exporter.key(space, ARCH, config=SMALL)
    directory = exporter.path_for(key).parent
    directory.mkdir(parents=True)
    stale = directory / f".{key}.onnx.abc.tmp"
    fresh = directory / f".{key}.onnx.def.tmp"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    os.utime(stale, (1, 1))
    exporter.export(space, ARCH, config=SMALL)
    assert not stale.exists() and fresh.exists()  # a fresh one may belong to a live writer


def test_export_many(space, exporter):
    archs = space.sample(3, seed=5)
    seen = []
    out = exporter.export_many(
        space,
        archs + [archs[0]],
        config=SMALL,
        progress=lambda i, n, m: seen.append((i, n, m.cached)),
    )
    assert [m.cached for m in out] == [False, False, False, True]
    assert seen == [(1, 4, False), (2, 4, False), (3, 4, False), (4, 4, True)]


# ----- fallback ---------------------------------------------------------------------------------


def test_torch_fallback_for_a_space_without_direct_builder(exporter):
    tiny = TinySpace()
    cfg = ModelConfig(channels=3, cells_per_stage=1, input_size=6, in_channels=2, num_classes=4)
    m = exporter.export(tiny, "k3-tanh", config=cfg, batch_size=2)
    assert m.exporter == TORCH and not m.cached
    assert read_sidecar(m.path)["exporter"] == TORCH
    x = np.random.default_rng(0).standard_normal(cfg.input_shape(2)).astype(np.float32)
    got = _session(m.path).run(["logits"], {"input": x})[0]
    with torch.no_grad():
        want = tiny.build_model((1, 1), cfg)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    again = exporter.export(tiny, (1, 1), config=cfg, batch_size=2)
    assert again.cached and again.exporter == TORCH


def test_fallback_failure_is_an_export_error(exporter, monkeypatch):
    tiny = TinySpace()

    def broken(arch, config=None):
        raise RuntimeError("no module today")

    monkeypatch.setattr(tiny, "build_model", broken)
    with pytest.raises(
        ExportError, match="torch.onnx.export failed for tiny k1-relu.*no module today"
    ):
        exporter.export(tiny, (0, 0))


# ----- bad input --------------------------------------------------------------------------------


def test_bad_inputs(space, exporter):
    with pytest.raises(ArchitectureError):
        exporter.export(space, "|nor_conv_3x3~0|+|bogus~0|")
    with pytest.raises(ExportError, match="batch_size"):
        exporter.export(space, ARCH, batch_size=0)
    with pytest.raises(ExportError, match="multiple of 4"):
        exporter.export(space, ARCH, config=ModelConfig(input_size=30))
    with pytest.raises(ExportError, match="opset"):
        OnnxExporter(cache_dir=exporter.cache_dir, opset=9).export(space, ARCH, config=SMALL)
    with pytest.raises(ValueError, match="opset"):
        OnnxExporter(cache_dir=exporter.cache_dir, opset=3)
    assert list(exporter.cache_dir.rglob("*.onnx")) == []


def test_checker_failure_is_an_export_error(space, exporter, monkeypatch):
    def bad_builder(arch, config, batch_size, opset):
        proto = onnx.ModelProto()
        proto.ir_version = 8
        node = proto.graph.node.add()
        node.op_type = "NoSuchOp"
        return proto

    monkeypatch.setattr(space, "build_onnx", bad_builder)
    with pytest.raises(ExportError, match="onnx.checker"):
        exporter.export(space, ARCH, config=SMALL)
    assert list(exporter.cache_dir.rglob("*.onnx")) == []


def test_unwritable_cache_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ExportError, match="cannot create the ONNX cache"):
        OnnxExporter(cache_dir=blocker / "cache")


def test_unwritable_cache_file(space, exporter, monkeypatch):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export_mod.tempfile, "mkstemp", full)
    with pytest.raises(ExportError, match="cannot write .*No space left on device") as info:
        exporter.export(space, ARCH, config=SMALL)
    assert isinstance(info.value, ResourceError)  # exit code 2, and nothing recorded as failed
    assert str(exporter.cache_dir) in str(info.value)
    assert "free disk space, then rerun the same command" in str(info.value)


def test_missing_torch_gives_install_hint(space, exporter, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch":
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(ExportError, match=r'pip install "hilnas\[search\]"') as info:
        exporter.export(space, ARCH, config=SMALL)
    assert isinstance(info.value, PreconditionError)  # a missing extra, exit code 2


def test_import_without_torch_or_onnx():
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None\n"
        "from hilnas.pipeline.export import load_exported, read_sidecar, OnnxExporter\n"
        "print('ok')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


def test_exported_model_path_type(space, exporter):
    m = exporter.export(space, ARCH, config=SMALL)
    assert isinstance(m.path, Path) and isinstance(m.export_s, float) and m.export_s >= 0
