"""Every method of ours is token-identical to plain decoding on the native kernels: in
float32 activations over every weight format, and with 8-bit activations (`int8`) over
every block format, with random models, prompts, draft lengths
and cache lengths (so verification blocks of every size meet every cache remainder), and
on the bundled model with prompts no other test or data file uses.

The float64 property tests (test_speculative.py, test_kangaroo.py) prove the loop's logic;
these prove the arithmetic: in float32 a pass over k rows must round exactly as k
one-row passes do, or a near-tie flips a token.
"""

from __future__ import annotations

from functools import cache, partial

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selfspec import decoding, native, sampling
from selfspec import speculative as spec
from selfspec.decoding import generate, run_to_end, vanilla
from selfspec.drafters.kangaroo import KangarooDrafter
from selfspec.drafters.lookup import PromptLookupDrafter
from selfspec.drafters.skip import AdaptiveThreshold, SkipLayerDrafter
from selfspec.hf_import import engine_from_hf
from selfspec.loading import LoadedModel
from selfspec.methods import get_method
from selfspec.model import SkipSet
from selfspec.random_models import random_config, seeded_model
from selfspec.sampling import SamplingConfig
from selfspec.speculative import speculative
from selfspec.tokens import ByteTokenizer
from selfspec.weights import BLOCKS, GGMLType
from tests.model_helpers import ARCHS, bundled, random_weight
from tests.test_kangaroo import make_adapter

pytestmark = pytest.mark.skipif(not native.available(), reason="needs the native kernels")
N_LAYERS = 4


@cache
def quantized_tiny(arch: str, qtype: GGMLType, int8: bool = False) -> LoadedModel:
    """A tiny random model whose every matrix (embedding and head included) is random
    blocks of `qtype`; widths are whole K-quant super-blocks (256) where needed. `int8`:
    its block weights multiply 8-bit activations."""
    config = random_config(arch)
    if BLOCKS[qtype][0] == 256:
        config.hidden_size, config.intermediate_size, config.head_dim = 256, 512, 64
        if arch == "tiny-gemma2":
            config.query_pre_attn_scalar = 64
    model = seeded_model(config, torch.float32, eager=arch == "tiny-gemma2")
    model = model.eval().requires_grad_(False)
    engine = engine_from_hf(model)
    for i, nl in enumerate(engine.native_layers):
        for name in ("q", "k", "v", "o", "gate", "up", "down"):
            w = getattr(nl, name)
            setattr(nl, name, random_weight(qtype, w.n, w.k, seed=100 * i + len(name)))
    v, c = engine.head_weight.n, engine.head_weight.k
    engine.embedding_weight = random_weight(qtype, v, c, seed=1)
    engine.head_weight = random_weight(qtype, v, c, seed=2)
    if int8:
        engine.use_int8_activations()
    eos = frozenset({ByteTokenizer.eos_token_id})
    return LoadedModel(f"{arch}-{qtype.name}", arch, engine, ByteTokenizer(), eos, torch.float32)


def tokens_of(lm, prompt, method, cfg):
    return run_to_end(generate(lm, prompt, method, cfg)).tokens


def traced(lm, prompt, method, cfg) -> tuple[list[int], list[torch.Tensor]]:
    """The tokens, and the logits row that decided each of them: vanilla's per step, a
    speculative method's from its prefill and from the verified rows it kept."""
    rows: list[torch.Tensor] = []
    real_verify = spec.verify

    def record_choose(logits, cfg, gen):
        rows.append(logits.clone())
        return sampling.choose(logits, cfg, gen)

    def record_verify(logits, draft, cfg, gen):
        n, bonus = real_verify(logits, draft, cfg, gen)
        rows.extend(logits[: n + 1].clone())
        return n, bonus

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(decoding, "choose", record_choose)
        mp.setattr(spec, "choose", record_choose)
        mp.setattr(spec, "verify", record_verify)
        tokens = tokens_of(lm, prompt, method, cfg)
    return tokens, rows


layer = st.integers(0, N_LAYERS - 1)
drafters = st.one_of(
    st.builds(
        lambda attn, mlp, k, g: (
            "skip",
            lambda lm: SkipLayerDrafter(
                SkipSet.of(attn, mlp), N_LAYERS, k, AdaptiveThreshold(g=g, alpha=0.85)
            ),
        ),
        st.sets(layer, max_size=2),
        st.sets(layer, max_size=2),
        st.integers(1, 10),
        st.floats(0.01, 0.99),
    ),
    st.builds(
        lambda n, k: ("pld", lambda lm: PromptLookupDrafter(max_ngram=n, k=k)),
        st.integers(1, 3),
        st.integers(1, 10),
    ),
    st.builds(
        lambda exit_layer, eta, k: (
            "kangaroo",
            lambda lm: KangarooDrafter(make_adapter(lm, exit_layer), exit_layer, eta, k),
        ),
        st.integers(1, N_LAYERS - 1),
        st.floats(0.01, 0.99),
        st.integers(1, 8),
    ),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    arch=st.sampled_from(ARCHS),
    qtype=st.sampled_from(list(GGMLType)),
    int8=st.booleans(),
    prompt=st.text(alphabet="abab cd.\n", min_size=1, max_size=60).filter(str.strip),
    drafter=drafters,
    cost_aware=st.booleans(),
)
def test_greedy_methods_are_exact_on_every_weight_format(
    arch, qtype, int8, prompt, drafter, cost_aware
):
    lm = quantized_tiny(arch, qtype, int8 and BLOCKS[qtype][0] > 1)
    assert lm.engine.native_for(torch.zeros(1, 1, lm.engine.cfg.dim))
    _, make = drafter
    method = partial(speculative, drafter=make, cost_aware=cost_aware)
    cfg = SamplingConfig(max_new_tokens=24)
    tokens, rows = traced(lm, prompt, method, cfg)
    want, want_rows = traced(lm, prompt, vanilla, cfg)
    assert tokens == want
    # Stronger than the tokens: every deciding logit is bit-identical, so no near-tie
    # anywhere could have gone the other way.
    for i in range(len(want)):
        assert torch.equal(rows[i], want_rows[i]), i


# Prompts written for this test only: not in selfspec/data/prompts.jsonl nor anywhere else.
UNSEEN = [
    "Describe, step by step, how a bicycle's gears make climbing a hill easier.",
    "Write a short, friendly note reminding a neighbour that the recycling bins go out "
    "on Tuesday evenings, and that glass goes in the green one.",
    "List three differences between a violin and a viola, one line each.",
]


@pytest.mark.bundled
@pytest.mark.parametrize("dtype", ["auto", "int8", "bfloat16"])
def test_every_method_of_ours_is_exact_on_the_bundled_model(dtype):
    """The file's Q4_1/Q8_0 blocks (the default), the same with 8-bit activations, and
    bfloat16 weights: skip, pld and kangaroo give vanilla's tokens on prompts no test has
    seen."""
    lm = bundled(dtype)
    cfg = SamplingConfig(max_new_tokens=48)
    for prompt in UNSEEN:
        want = tokens_of(lm, prompt, vanilla, cfg)
        for name in ("skip", "pld", "kangaroo"):
            info = get_method(name)
            assert tokens_of(lm, prompt, partial(info.run, **info.options), cfg) == want, name
