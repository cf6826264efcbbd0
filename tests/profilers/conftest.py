"""Tiny ONNX models built with onnx.helper (onnx is a dev/search dependency, not a profiler one)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _save(graph, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


def matmul_model(
    path: Path, n: int = 64, batch: int | str = 1, chain: int = 1, rows: int = 0
) -> Path:
    """y = relu(x @ W)^chain, x: [batch, n] (or [batch, rows, n]), W: [n, n]."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32), "w")
    nodes, prev = [], "x"
    for i in range(chain):
        nodes.append(helper.make_node("MatMul", [prev, "w"], [f"m{i}"]))
        nodes.append(helper.make_node("Relu", [f"m{i}"], [f"r{i}"]))
        prev = f"r{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    graph = helper.make_graph(
        nodes,
        "matmul",
        [
            helper.make_tensor_value_info(
                "x", TensorProto.FLOAT, [batch, rows, n] if rows else [batch, n]
            )
        ],
        [
            helper.make_tensor_value_info(
                "y", TensorProto.FLOAT, [batch, rows, n] if rows else [batch, n]
            )
        ],
        initializer=[w],
    )
    return _save(graph, path)


def conv_model(path: Path, channels: int = 16, size: int = 32) -> Path:
    """A Conv-BN-free NB201-like stem: x[1,3,s,s] -> Conv3x3 -> Relu -> GlobalAveragePool."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((channels, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("GlobalAveragePool", ["r"], ["y"]),
        ],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 1, 1])],
        initializer=[w],
    )
    return _save(graph, path)


def hanging_model(path: Path) -> Path:
    """A Loop with 2**62 iterations: a real model that keeps ONNX Runtime busy forever."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["v_in", "one"], ["v_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1]),
        ],
        initializer=[numpy_helper.from_array(np.ones(1, np.float32), "one")],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body)],
        "hang",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        initializer=[
            numpy_helper.from_array(np.array(2**62, np.int64), "trips"),
            numpy_helper.from_array(np.array(True), "cond"),
        ],
    )
    return _save(graph, path)


def big_weights_model(path: Path, megabytes: int = 64) -> Path:
    """x[1,n] + W[n] with a large initializer, so peak memory is clearly visible."""
    n = megabytes * 2**20 // 4
    w = numpy_helper.from_array(np.full((1, n), 0.5, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
        initializer=[w],
    )
    return _save(graph, path)


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("onnx-models")
    not_onnx = root / "not_onnx.onnx"
    not_onnx.write_text("this is a text file, not a protobuf\n")
    truncated = root / "truncated.onnx"
    truncated.write_bytes((matmul_model(root / "tmp.onnx", n=32)).read_bytes()[:40])
    empty = root / "empty.onnx"
    empty.write_bytes(b"")
    return SimpleNamespace(
        matmul=matmul_model(root / "matmul.onnx", n=64),
        matmul_slow=matmul_model(root / "matmul_slow.onnx", n=256, rows=256, chain=2),  # ~1-3 ms
        conv=conv_model(root / "conv.onnx"),
        dynamic_batch=matmul_model(root / "dynamic.onnx", n=16, batch="N"),
        batch4=matmul_model(root / "batch4.onnx", n=16, batch=4),
        hang=hanging_model(root / "hang.onnx"),
        big=big_weights_model(root / "big.onnx"),
        crash=matmul_model(root / "crash-me-HILNAS_TEST.onnx", n=16),
        not_onnx=not_onnx,
        truncated=truncated,
        empty=empty,
        missing=root / "missing.onnx",
    )
