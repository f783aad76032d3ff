"""The engine against Hugging Face's own forward pass and against a hand-built reference.

Tolerances: in float64 the engine and Hugging Face compute the same operations, so we
require 1e-9; in float32 1e-4 (different fused kernels may round differently).
"""

from __future__ import annotations

import copy

import pytest
import torch

from selfspec.errors import BadInputError
from selfspec.model import SkipSet
from selfspec.ops import causal_mask
from tests.model_helpers import ARCHS, DEVICE, random_ids, tiny

TOL = {"float64": 1e-9, "float32": 1e-4}


def engine_logits(lm, ids, skip=None):
    cache = lm.engine.new_cache(len(ids) + 4)
    with torch.inference_mode():
        return lm.engine.forward(torch.tensor([ids]), cache, 0, skip=skip)[0]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("arch", ARCHS)
def test_logits_match_hugging_face(arch, dtype):
    lm = tiny(arch, dtype)
    ids = random_ids(40, seed=1)  # longer than the tiny sliding windows (24)
    with torch.inference_mode():
        ref = lm.hf_model(torch.tensor([ids])).logits[0]
    assert torch.allclose(
        engine_logits(lm, ids),
        ref.to(torch.float64 if dtype == "float64" else torch.float32),
        atol=TOL[dtype],
        rtol=0,
    )


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("arch", ARCHS)
def test_decoding_and_verification_sizes_match_hugging_face(arch, dtype, monkeypatch):
    """One-token steps and a 6-token verification block on the native kernels. The engine
    keeps the weights in `dtype` but computes in float32, so the reference is Hugging
    Face's float32 forward over the very same (rounded) weights: the float32 tolerance
    applies whatever the weight format, on any CPU."""
    from selfspec import native

    calls = []
    real = native.layers
    monkeypatch.setattr(native, "layers", lambda *a: calls.append(1) or real(*a))
    lm = tiny(arch, dtype)
    ids = random_ids(32, seed=3)
    with torch.inference_mode():
        ref = copy.deepcopy(lm.hf_model).float()(torch.tensor([ids])).logits[0]  # [T, V]
        cache = lm.engine.new_cache(40)
        lm.engine.forward(torch.tensor([ids[:24]]), cache, 0)
        steps = [lm.engine.forward(torch.tensor([[ids[p]]]), cache, p)[0] for p in (24, 25)]
        block = lm.engine.forward(torch.tensor([ids[26:]]), cache, 26)[0]
    ours = torch.cat([*steps, block])  # positions 24..31
    assert ours.dtype == torch.float32
    assert torch.allclose(ours, ref[24:], atol=TOL["float32"], rtol=0)
    assert bool(calls) == (native.available() and DEVICE == "cpu")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("arch", ARCHS)
def test_cached_decoding_equals_uncached(arch, dtype):
    """Any split of a sequence into steps and blocks gives the same logits; on the native
    kernels (float32) bit for bit, the row invariance every lossless method rests on."""
    lm = tiny(arch, dtype)
    ids = random_ids(50, seed=2)
    full = engine_logits(lm, ids)
    cache = lm.engine.new_cache(64)
    steps = [lm.engine.forward(torch.tensor([ids[:20]]), cache, 0)[0]]
    pos = 20
    for n in (1, 3, 1, 8, 1, 1, 15):  # a mix of one-token steps and multi-token blocks
        steps.append(lm.engine.forward(torch.tensor([ids[pos : pos + n]]), cache, pos)[0])
        pos += n
    assert pos == 50
    if lm.engine.native_for(full[None]):
        assert torch.equal(torch.cat(steps), full)
    else:
        assert torch.allclose(torch.cat(steps), full, atol=1e-9, rtol=0)


def test_rewinding_overwrites_stale_cache_entries():
    """Continuing from an earlier position (a rejected draft) gives the plain result."""
    lm = tiny("tiny-llama")
    ids = random_ids(30, seed=3)
    junk = random_ids(6, seed=4)
    cache = lm.engine.new_cache(40)
    lm.engine.forward(torch.tensor([ids[:24]]), cache, 0)
    lm.engine.forward(torch.tensor([junk]), cache, 24)  # drafts, then rejected
    out = lm.engine.forward(torch.tensor([ids[24:]]), cache, 24)[0]
    assert torch.allclose(out, engine_logits(lm, ids)[24:], atol=1e-9, rtol=0)


def reference_forward(lm, ids, skip: SkipSet) -> torch.Tensor:
    """Hand-composed forward from Hugging Face's own sub-modules, skipping sub-layers.

    Independent of the engine: no KV cache, HF's attention and MLP modules, an explicit
    additive mask, and the residual structure written out per architecture.
    """
    hf = lm.hf_model
    base = hf.model
    x = torch.tensor([ids])
    t = x.shape[1]
    h = base.embed_tokens(x)
    positions = torch.arange(t)[None]
    layer_types = getattr(hf.config, "layer_types", None)
    gemma = hf.config.model_type in ("gemma2", "gemma3_text")
    for i, layer in enumerate(base.layers):
        if hf.config.model_type == "gemma3_text":  # one rotary table per layer type
            pos_emb = base.rotary_emb(h, positions, layer_types[i])
        else:
            pos_emb = base.rotary_emb(h, positions)
        window = lm.engine.cfg.windows[i]
        allowed = causal_mask(0, t, window, h.device)
        if allowed is None:
            allowed = torch.ones(t, t, dtype=torch.bool)
        mask = torch.zeros(t, t, dtype=h.dtype).masked_fill(~allowed, float("-inf"))[None, None]
        if i not in skip.attn:
            a, _ = layer.self_attn(
                hidden_states=layer.input_layernorm(h),
                position_embeddings=pos_emb,
                attention_mask=mask,
            )
            h = h + (layer.post_attention_layernorm(a) if gemma else a)
        if i not in skip.mlp:
            pre = layer.pre_feedforward_layernorm if gemma else layer.post_attention_layernorm
            m = layer.mlp(pre(h))
            h = h + (layer.post_feedforward_layernorm(m) if gemma else m)
    logits = hf.lm_head(base.norm(h))
    cap = getattr(hf.config, "final_logit_softcapping", None) if gemma else None
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits[0]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(
    "skip",
    [SkipSet(), SkipSet.of(attn=[1]), SkipSet.of(mlp=[2]), SkipSet.of(attn=[1, 2], mlp=[1, 3])],
)
def test_sublayer_skip_matches_reference(arch, skip):
    lm = tiny(arch)
    ids = random_ids(30, seed=5)
    with torch.inference_mode():
        ref = reference_forward(lm, ids, skip)
    assert torch.allclose(engine_logits(lm, ids, skip), ref, atol=1e-9, rtol=0)


def test_skipping_changes_the_output():
    lm = tiny("tiny-llama")
    ids = random_ids(10, seed=6)
    assert not torch.allclose(engine_logits(lm, ids), engine_logits(lm, ids, SkipSet.of([1])))


@pytest.mark.parametrize("split", [1, 2, 3])
def test_layer_ranges_compose(split):
    lm = tiny("tiny-gemma2")
    eng = lm.engine
    x = torch.tensor([random_ids(12, seed=7)])
    with torch.inference_mode():
        h = eng.embed(x)
        whole = eng.run_layers(h, eng.new_cache(16), 0)
        cache = eng.new_cache(16)
        part = eng.run_layers(eng.run_layers(h, cache, 0, 0, split), cache, 0, split, None)
    assert torch.allclose(whole, part, atol=1e-12, rtol=0)


def test_skip_set_naming_missing_layers_is_refused():
    with pytest.raises(BadInputError, match=r"layers \[7\].*0\.\.3"):
        SkipSet.of(attn=[7]).check(4)


def test_weights_are_shared_not_copied():
    """On the native path the engine reads the Hugging Face model's own tensors."""
    lm = tiny("tiny-qwen2", "float32")
    if lm.engine.native_layers is None:
        pytest.skip("torch's path (no native kernels here) uses fused dense copies")
    hf_layer, ours = lm.hf_model.model.layers[0], lm.engine.native_layers[0]
    assert hf_layer.self_attn.q_proj.weight.data_ptr() == ours.q.data.data_ptr()
    assert hf_layer.mlp.down_proj.weight.data_ptr() == ours.down.data.data_ptr()
    assert lm.engine.head_weight.data.data_ptr() == lm.hf_model.lm_head.weight.data_ptr()


def test_compiled_engine_decodes_the_same_tokens():
    """The compile flag's wiring (the eager backend keeps the test fast; the default
    inductor backend compiles C++ for minutes)."""
    from selfspec.decoding import generate, run_to_end, vanilla
    from selfspec.loading import load_model
    from selfspec.sampling import SamplingConfig

    cfg = SamplingConfig(max_new_tokens=4)
    plain = load_model("tiny-llama", dtype="float64")
    compiled = load_model("tiny-llama", dtype="float64")
    compiled.engine.compile(backend="eager")
    want = run_to_end(generate(plain, "hello", vanilla, cfg)).tokens
    assert run_to_end(generate(compiled, "hello", vanilla, cfg)).tokens == want
    assert compiled.engine._torch_layers is not plain.engine._torch_layers
