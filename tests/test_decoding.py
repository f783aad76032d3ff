"""Plain decoding: equal to Hugging Face greedy, sampling settings, stopping, bad input."""

from __future__ import annotations

import pytest
import torch

from selfspec.decoding import GenerationResult, Piece, generate, run_to_end, vanilla
from selfspec.errors import BadInputError
from selfspec.hf_methods import hf_generate
from selfspec.sampling import SamplingConfig, probabilities
from selfspec.tokens import TextStream
from tests.model_helpers import ARCHS, tiny


def run(lm, prompt, method, **cfg):
    return run_to_end(generate(lm, prompt, method, SamplingConfig(**cfg)))


@pytest.mark.parametrize("arch", ARCHS)
def test_vanilla_greedy_equals_hugging_face_greedy(arch):
    lm = tiny(arch)
    ours = run(lm, "The cat", vanilla, max_new_tokens=40)
    theirs = run(lm, "The cat", hf_generate, max_new_tokens=40)
    assert ours.tokens == theirs.tokens and len(ours.tokens) > 10


def test_sampling_is_reproducible_with_a_seed():
    lm = tiny("tiny-llama")
    a = run(lm, "x", vanilla, max_new_tokens=30, temperature=1.0, seed=7)
    b = run(lm, "x", vanilla, max_new_tokens=30, temperature=1.0, seed=7)
    c = run(lm, "x", vanilla, max_new_tokens=30, temperature=1.0, seed=8)
    assert a.tokens == b.tokens and a.tokens != c.tokens


def test_temperature_zero_and_top_k_one_equal_greedy():
    lm = tiny("tiny-qwen2")
    greedy = run(lm, "y", vanilla, max_new_tokens=20).tokens
    assert run(lm, "y", vanilla, max_new_tokens=20, temperature=0.0, seed=3).tokens == greedy
    assert (
        run(lm, "y", vanilla, max_new_tokens=20, temperature=0.7, top_k=1, seed=3).tokens == greedy
    )


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    p = probabilities(logits, SamplingConfig(temperature=1.0, top_p=0.75))
    assert torch.allclose(p, torch.tensor([0.625, 0.375, 0.0, 0.0]))
    k = probabilities(logits, SamplingConfig(temperature=1.0, top_k=3))
    assert k[3] == 0 and torch.isclose(k.sum(), torch.tensor(1.0))


def test_stops_at_eos(monkeypatch):
    lm = tiny("tiny-llama")
    first = run(lm, "z", vanilla, max_new_tokens=10).tokens
    monkeypatch.setattr(lm, "eos_ids", frozenset({first[3]}))
    result = run(lm, "z", vanilla, max_new_tokens=10)
    assert result.stop_reason == "eos" and result.tokens == first[: first.index(first[3])]


def test_streamed_pieces_add_up_to_the_text():
    lm = tiny("tiny-mistral")
    events = list(generate(lm, "stream", vanilla, SamplingConfig(max_new_tokens=50)))
    result = events[-1]
    assert isinstance(result, GenerationResult)
    pieces = [e.text for e in events if isinstance(e, Piece)]
    assert "".join(pieces) == result.text
    assert result.mean_accepted == 1.0 and result.acceptance_rate is None


def test_text_stream_holds_back_split_characters():
    class Bytes:
        def decode(self, ids, skip_special_tokens=True):
            return bytes(ids).decode("utf-8", errors="replace")

    stream = TextStream(Bytes())
    encoded = list("é\nß".encode())
    out = [stream.push([b]) for b in encoded]
    assert out[0] == "" and "".join(out) == "é\nß"


@pytest.mark.parametrize(
    "prompt, cfg, message",
    [
        ("", {}, "empty"),
        ("   ", {}, "empty"),
        ("x" * 2000, {"max_new_tokens": 10}, "context of 1024"),
        ("x", {"max_new_tokens": 0}, "between 1 and 4096"),
        ("x", {"max_new_tokens": 4097}, "between 1 and 4096"),
        ("x", {"temperature": -1.0}, "temperature"),
        ("x", {"top_p": 0.0}, "top_p"),
    ],
)
def test_bad_input_is_a_clear_error(prompt, cfg, message):
    lm = tiny("tiny-llama")
    with pytest.raises(BadInputError, match=message):
        run(lm, prompt, vanilla, **cfg)
