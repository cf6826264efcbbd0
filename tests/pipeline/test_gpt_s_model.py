"""The GPT-S decoder in torch and its ONNX graphs (traced and direct), run in ONNX Runtime.

Tiny vocabulary and context keep these fast; the architectures are real GPT-S ones.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from hilnas.pipeline.spaces.gpt_s import GPTConfig, GPTSpace  # noqa: E402
from hilnas.pipeline.spaces.gpt_s.model import GPT  # noqa: E402
from hilnas.pipeline.spaces.gpt_s.onnx_direct import build_gpt_onnx  # noqa: E402
from hilnas.pipeline.spaces.gpt_s.onnx_export import (  # noqa: E402
    export_gpt,
    past_names,
    present_names,
    workload_inputs,
)
from hilnas.pipeline.spaces.gpt_s.weights import generated_matrix  # noqa: E402

CFG = GPTConfig(vocab_size=61, context_length=24, seq_len=8)
DEC = dataclasses.replace(CFG, phase="decode")
SMALL = (
    '{"embed":192,"layers":10,"mlp_ratio":[2,3,4,2,3,4,2,3,4,2],'
    '"heads":[4,8,12,4,8,12,4,8,12,4],"bias":true}'
)


@pytest.fixture(scope="module")
def arch():
    space = GPTSpace()
    return space.decode(space.parse(SMALL))


@pytest.fixture(scope="module")
def model(arch):
    return GPT(arch, CFG).eval()


def _session(source, level=None) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    if level is not None:
        so.graph_optimization_level = level
    if not isinstance(source, (str, bytes)):
        source = str(source)
    return ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])


def _ids(batch: int, length: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, CFG.vocab_size, (batch, length), dtype=np.int64)


def test_torch_model_shapes_cache_and_causality(model):
    assert len(model.blocks) == 10
    assert model.blocks[2].attn.heads == 12
    assert model.blocks[2].attn.qkv.weight.shape == (3 * 12 * 64, 192)
    assert model.blocks[2].mlp[0].weight.shape == (4 * 192, 192)
    assert model.blocks[0].mlp[0].bias is not None
    ids = torch.from_numpy(_ids(2, 9))
    with torch.no_grad():
        full, cache = model(ids)
        # causality: changing the last token leaves earlier positions' logits unchanged
        other = ids.clone()
        other[:, -1] = (other[:, -1] + 1) % CFG.vocab_size
        changed, _ = model(other)
        # decode after a prefill equals the full forward's last position
        _, prefix_cache = model(ids[:, :8])
        step, _ = model(ids[:, 8:], prefix_cache)
    assert full.shape == (2, 9, CFG.vocab_size)
    assert cache[2][0].shape == (2, 12, 9, 64)
    torch.testing.assert_close(changed[:, :8], full[:, :8])
    assert not torch.allclose(changed[:, 8], full[:, 8])
    torch.testing.assert_close(step[:, 0], full[:, 8], atol=1e-5, rtol=1e-4)
    space = GPTSpace()
    no_bias = GPT(space.decode(space.parse(SMALL.replace("true", "false"))), CFG)
    assert no_bias.blocks[0].attn.qkv.bias is None
    assert model.num_params() - no_bias.num_params() == sum(
        3 * 64 * h + 192 + r * 192 + 192
        for r, h in zip(model.arch.mlp_ratio, model.arch.heads, strict=True)
    )
    assert model.num_params() == space.params(space.parse(SMALL), CFG)


def test_weights_are_the_deterministic_hash(model):
    w = model.blocks[3].mlp[2].weight.detach().numpy()  # torch layout: (out, in)
    np.testing.assert_array_equal(w, generated_matrix("blocks.3.mlp.2.weight", 2 * 192, 192).T)
    assert abs(float(w.std()) - 0.02) < 0.002 and abs(float(w.mean())) < 0.002
    again = GPT(model.arch, CFG)
    assert all(
        torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters(), strict=True)
    )
    assert (
        float(model.ln_f.weight.detach().min()) == 1.0
        and float(model.blocks[0].attn.proj.bias.detach().abs().max()) == 0
    )
    tall = generated_matrix("wte.weight", 600, 8)  # rows past the hashed block repeat it
    np.testing.assert_array_equal(tall[256:512], tall[:256])


def test_space_model_and_direct_graph_agree_in_both_phases(arch):
    """build_model and build_onnx (weights computed in the graph) are the same network."""
    space = GPTSpace()
    code = space.parse(SMALL)
    for cfg, batch in ((CFG, 2), (DEC, 3), (dataclasses.replace(CFG, all_logits=True), 1)):
        work = space.workload(code, cfg, batch)
        proto = space.build_onnx(code, cfg, batch, 17)
        onnx.checker.check_model(proto)
        assert proto.ByteSize() < 200_000  # no stored weights
        sess = _session(proto.SerializeToString())
        assert [(i.name, i.shape) for i in sess.get_inputs()] == [
            (s.name, list(s.shape)) for s in work.inputs
        ]
        feed = workload_inputs(arch, cfg, batch, seed=4)
        got = sess.run(None, feed)
        with torch.no_grad():
            want = space.build_model(code, cfg)(
                *(torch.from_numpy(feed[s.name]) for s in work.inputs)
            )
        assert len(got) == len(want) == len(work.outputs)
        for g, w, spec in zip(got, want, work.outputs, strict=True):
            assert g.shape == spec.shape
            np.testing.assert_allclose(g, w.numpy(), atol=2e-5, rtol=1e-4)


def test_direct_prefill_then_decode_equals_one_longer_prefill(arch, model):
    ids = _ids(2, 9, seed=2)
    with torch.no_grad():
        full, _ = model(torch.from_numpy(ids))
    pre = _session(build_gpt_onnx(arch, CFG, batch_size=2).SerializeToString())
    dec = _session(build_gpt_onnx(arch, DEC, batch_size=2).SerializeToString())
    out = pre.run(None, {"input_ids": ids[:, :8]})
    np.testing.assert_allclose(out[0][:, 0], full[:, 7].numpy(), atol=1e-5, rtol=1e-4)
    feed = {"input_ids": ids[:, 8:], **dict(zip(past_names(10), out[1:], strict=True))}
    step = dec.run(None, feed)
    np.testing.assert_allclose(step[0][:, 0], full[:, 8].numpy(), atol=1e-5, rtol=1e-4)
    assert step[1].shape == (2, 4, 9, 64) and step[5].shape == (2, 12, 9, 64)


def test_generated_weights_are_folded_at_session_creation(arch, tmp_path):
    """ONNX Runtime's basic level folds the weight generators into plain initializers, so a
    timed session runs no hashing; the dynamic graph serves several workloads."""
    proto = build_gpt_onnx(arch, DEC, dynamic=True)
    seeded = build_gpt_onnx(arch, DEC, dynamic=True, weights="seeded")
    assert proto.ByteSize() < 200_000 < 4_000_000 < seeded.ByteSize()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(tmp_path / "folded.onnx")
    sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    folded = onnx.load(str(tmp_path / "folded.onnx"))
    ops = {n.op_type for n in folded.graph.node}
    assert not ops & {"Mod", "Cast", "Tile"}, ops
    stored = sum(int(np.prod(t.dims)) for t in folded.graph.initializer)
    assert (
        stored >= 0.99 * GPT(arch, CFG).num_params()
    )  # zero biases and unit LN weights are shared
    for batch, past in ((1, 3), (4, 17)):
        cfg = dataclasses.replace(DEC, seq_len=past)
        out = sess.run(None, workload_inputs(arch, cfg, batch))
        assert out[0].shape == (batch, 1, CFG.vocab_size) and out[1].shape == (
            batch,
            4,
            past + 1,
            64,
        )
        assert np.isfinite(out[0]).all()


def test_traced_export_matches_torch_in_both_phases(arch, model, tmp_path):
    pre = export_gpt(arch, tmp_path / "p.onnx", CFG, model=model)
    dec = export_gpt(arch, tmp_path / "d.onnx", DEC, model=model)
    # the tied head is stored once: the file is about the float32 parameters
    assert 4 * model.num_params() < pre.onnx_bytes < 4 * model.num_params() * 1.05
    sp, sd = _session(pre.path), _session(dec.path)
    assert [i.name for i in sp.get_inputs()] == ["input_ids"]
    assert sp.get_inputs()[0].type == "tensor(int64)"
    assert [i.name for i in sd.get_inputs()] == ["input_ids", *past_names(10)]
    assert [o.name for o in sd.get_outputs()] == ["logits", *present_names(10)]
    ids = _ids(3, 7, seed=1)
    with torch.no_grad():
        full, _ = model(torch.from_numpy(ids))
    out = sp.run(None, {"input_ids": ids[:, :6]})
    np.testing.assert_allclose(out[0][:, 0], full[:, 5].numpy(), atol=1e-5, rtol=1e-4)
    assert out[1].shape == (3, 4, 6, 64)
    feed = {"input_ids": ids[:, 6:], **dict(zip(past_names(10), out[1:], strict=True))}
    step = sd.run(None, feed)
    np.testing.assert_allclose(step[0][:, 0], full[:, 6].numpy(), atol=1e-5, rtol=1e-4)
    assert step[1].shape == (3, 4, 7, 64) and step[5].shape == (3, 12, 7, 64)


def test_external_data_export(arch, model, tmp_path):
    cfg = dataclasses.replace(DEC, seq_len=5)
    res = export_gpt(arch, tmp_path / "d.onnx", cfg, model=model, external_data=True)
    assert res.data_bytes > 4 * model.num_params() * 0.9 > res.onnx_bytes
    feed = workload_inputs(arch, cfg, 2)
    out = _session(res.path).run(None, feed)
    names = past_names(10)
    with torch.no_grad():
        past = [
            (torch.from_numpy(feed[k]), torch.from_numpy(feed[v]))
            for k, v in zip(names[::2], names[1::2], strict=True)
        ]
        ref, _ = model(torch.from_numpy(feed["input_ids"]), past)
    np.testing.assert_allclose(out[0], ref.numpy(), atol=1e-5, rtol=1e-4)


def test_bad_input(arch):
    from hilnas.devices.errors import InvalidInputError

    space = GPTSpace()
    with pytest.raises(InvalidInputError, match="unknown weights"):
        build_gpt_onnx(arch, CFG, weights="zeros")
    with pytest.raises(InvalidInputError, match="needs a GPTConfig"):
        space.build_model(space.parse(SMALL), object())
    with pytest.raises(InvalidInputError, match="batch_size"):
        workload_inputs(arch, CFG, 0)
