"""The layer search finds a planted redundant layer, resumes, and reports honestly."""

from __future__ import annotations

import pytest
import torch

from selfspec.loading import load_model
from selfspec.model import SkipSet
from selfspec.search import SearchSettings, calibrate, matchness, run_search, weight_share

# optuna is a requirement here (installed by `make test`); only the GPU image lacks it.
pytest.importorskip("optuna", reason="the layer search needs optuna (absent on the GPU image)")


def planted_model():
    """A tiny model whose layer 2 does nothing: its output projections are zero."""
    lm = load_model("tiny-llama", dtype="float64")
    with torch.no_grad():
        lm.engine.layers[2].wo.zero_()
        lm.engine.layers[2].w_down.zero_()
    return lm


def test_search_finds_the_planted_redundant_layer(tmp_path):
    lm = planted_model()
    # A fixed verification cost keeps the test free of timing noise.
    settings = SearchSettings(trials=30, prompts=2, tokens=16, seed=0, verify_cost=1.0)
    lines = []
    profile = run_search(lm, settings, out=tmp_path / "p.json", progress=lines.append)
    assert 2 in profile.attn and 2 in profile.mlp
    assert profile.beats_plain and profile.score > 1.0
    assert 0 not in profile.attn + profile.mlp and 3 not in profile.attn + profile.mlp
    assert [p.trial for p in lines] == list(range(1, 31))
    assert (
        lines[-1].best == max(p.score for p in lines) and round(lines[-1].best, 4) == profile.score
    )
    assert str(lines[0]).startswith("trial 1: score ")
    assert (tmp_path / "p.json").is_file()


def test_search_resumes_without_losing_trials(tmp_path):
    lm = planted_model()
    out = tmp_path / "p.json"
    run_search(lm, SearchSettings(trials=3, prompts=1, tokens=8), out=out)
    profile = run_search(lm, SearchSettings(trials=5, prompts=1, tokens=8), out=out)
    assert profile.trials == 5  # 3 kept from the first run + 2 new


def test_planted_layer_keeps_full_matchness_and_cuts_cost():
    lm = planted_model()
    cal = calibrate(lm, SearchSettings(prompts=1, tokens=12))
    assert matchness(lm, cal, SkipSet.of([2], [2])) == 1.0
    assert matchness(lm, cal, SkipSet.of([1], [1])) < 1.0
    assert weight_share(lm, SkipSet.of([2], [2])) < weight_share(lm, SkipSet.of([2]))


def test_no_winner_is_said_plainly(tmp_path):
    lm = load_model("tiny-gemma2", dtype="float64")  # random layers: nothing is redundant
    profile = run_search(lm, SearchSettings(trials=4, prompts=1, tokens=8), out=tmp_path / "p")
    assert not profile.beats_plain
    assert "no skip set beats plain decoding" in profile.note


def test_matchness_from_cached_states_equals_a_full_skipped_pass():
    lm = load_model("tiny-qwen2", dtype="float64")
    cal = calibrate(lm, SearchSettings(prompts=2, tokens=12))
    skip = SkipSet.of([2], [1])
    hits = total = 0
    for seq, start in zip(cal.sequences, cal.starts, strict=True):
        cache = lm.engine.new_cache(len(seq))
        with torch.inference_mode():
            lm.engine.forward(torch.tensor([seq[: start - 1]]), cache, 0)
            logits = lm.engine.forward(torch.tensor([seq[start - 1 : -1]]), cache, start - 1, skip)
        hits += int((logits[0].argmax(-1) == torch.tensor(seq[start:])).sum())
        total += len(seq) - start
    assert matchness(lm, cal, skip) == hits / total
