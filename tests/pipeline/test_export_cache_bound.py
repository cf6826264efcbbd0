"""The ONNX cache's size bound: least recently used entries go, the one just written stays.

Real exports of tiny NB201 subnets (the direct builder, a few kB each) into a temporary cache
directory; "recently used" is set explicitly with ``os.utime`` on the sidecars so the order does
not depend on the file system's timestamp resolution. Nothing is patched.
"""

from __future__ import annotations

import os
import time

import pytest
from hilnas.devices.errors import InvalidInputError
from hilnas.pipeline.export import (
    CACHE_MB_ENV,
    DEFAULT_CACHE_MB,
    OnnxExporter,
    cache_bound_mb,
    cache_size_bytes,
    evict_lru,
)
from hilnas.pipeline.spaces import ModelConfig, get_space

SPACE = get_space("nb201")
TINY = ModelConfig(channels=4, cells_per_stage=1, input_size=8)
ARCHS = [SPACE.format(SPACE.from_index(i)) for i in (0, 1, 2, 3, 4, 5)]


def _entry_files(exporter: OnnxExporter, key: str) -> list[str]:
    path = exporter.path_for(key)
    return [p.name for p in (path, path.with_suffix(".json")) if p.exists()]


def _age(exporter: OnnxExporter, key: str, seconds_ago: float) -> None:
    """Mark an entry as last used ``seconds_ago`` (its sidecar's mtime is its last use)."""
    when = time.time() - seconds_ago
    os.utime(exporter.path_for(key).with_suffix(".json"), (when, when))


def _fill(exporter: OnnxExporter, n: int) -> list[str]:
    """Export the first ``n`` archs, the first one the least recently used."""
    keys = [exporter.export(SPACE, a, config=TINY).key for a in ARCHS[:n]]
    for i, key in enumerate(keys):
        _age(exporter, key, 1000 - 10 * i)
    return keys


def test_a_write_over_the_bound_evicts_the_oldest_and_keeps_the_new_one(tmp_path):
    unbounded = OnnxExporter(cache_dir=tmp_path / "onnx", max_mb=0)
    keys = _fill(unbounded, 4)
    entry = cache_size_bytes(unbounded.cache_dir) / 4
    # room for about three entries: the fifth write must push out the two oldest
    bounded = OnnxExporter(cache_dir=tmp_path / "onnx", max_mb=3.2 * entry / 2**20)
    new = bounded.export(SPACE, ARCHS[4], config=TINY)
    assert not new.cached
    assert _entry_files(bounded, keys[0]) == [] and _entry_files(bounded, keys[1]) == []
    for key in (keys[2], keys[3], new.key):  # model and sidecar both kept
        assert len(_entry_files(bounded, key)) == 2, key
    assert cache_size_bytes(bounded.cache_dir) <= bounded.max_bytes
    # an evicted entry is a plain miss: exported again, intact
    again = bounded.export(SPACE, ARCHS[0], config=TINY)
    assert not again.cached and again.path.is_file()


def test_a_cache_hit_counts_as_a_use(tmp_path):
    unbounded = OnnxExporter(cache_dir=tmp_path / "onnx", max_mb=0)
    keys = _fill(unbounded, 3)
    entry = cache_size_bytes(unbounded.cache_dir) / 3
    bounded = OnnxExporter(cache_dir=tmp_path / "onnx", max_mb=3.2 * entry / 2**20)
    assert bounded.export(SPACE, ARCHS[0], config=TINY).cached  # the oldest is used again
    bounded.export(SPACE, ARCHS[3], config=TINY)
    assert len(_entry_files(bounded, keys[0])) == 2  # refreshed by the hit: kept
    assert _entry_files(bounded, keys[1]) == []  # now the least recently used: evicted


def test_the_entry_just_written_stays_even_alone_over_the_bound(tmp_path):
    exporter = OnnxExporter(cache_dir=tmp_path / "onnx", max_mb=1e-6)  # about one byte
    first = exporter.export(SPACE, ARCHS[0], config=TINY)
    second = exporter.export(SPACE, ARCHS[1], config=TINY)
    assert not first.path.exists() and not first.path.with_suffix(".json").exists()
    assert second.path.is_file() and exporter.lookup(SPACE, ARCHS[1], config=TINY) is not None


def test_a_write_in_flight_is_never_evicted_but_an_old_orphan_is(tmp_path):
    exporter = OnnxExporter(cache_dir=tmp_path / "onnx", max_mb=0)
    keys = _fill(exporter, 3)
    # keys[0]: a model whose sidecar is not written yet (an export in flight, just now);
    # keys[1]: the same, left by a writer killed an hour ago (an orphan)
    in_flight = exporter.path_for(keys[0])
    orphan = exporter.path_for(keys[1])
    in_flight.with_suffix(".json").unlink()
    orphan.with_suffix(".json").unlink()
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    evicted = evict_lru(exporter.cache_dir, 0, keep=[keys[2]])
    assert evicted == [keys[1]]
    assert in_flight.is_file() and not orphan.exists()
    assert len(_entry_files(exporter, keys[2])) == 2


def test_the_bound_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_MB_ENV, raising=False)
    assert cache_bound_mb() == DEFAULT_CACHE_MB
    assert OnnxExporter(cache_dir=tmp_path).max_bytes == int(DEFAULT_CACHE_MB * 2**20)
    monkeypatch.setenv(CACHE_MB_ENV, "0.5")
    assert OnnxExporter(cache_dir=tmp_path).max_bytes == 2**19
    monkeypatch.setenv(CACHE_MB_ENV, "0")
    assert OnnxExporter(cache_dir=tmp_path).max_bytes is None  # 0: no bound
    for bad in ("lots", "-1", "nan", "inf"):
        monkeypatch.setenv(CACHE_MB_ENV, bad)
        with pytest.raises(InvalidInputError, match=CACHE_MB_ENV) as info:
            OnnxExporter(cache_dir=tmp_path / "never")
        assert "\n" not in str(info.value) and "unset it" in str(info.value)
        assert not (tmp_path / "never").exists()  # refused before the cache is created
