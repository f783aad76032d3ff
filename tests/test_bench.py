"""The lossless check (`selfspec.compare`): exact for our methods, teacher-forced tolerance
for peers; and the benchmark report built on it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from selfspec import compare as comparing
from selfspec.bench import REPORT_SCHEMA, run_bench
from selfspec.bench_tables import markdown_table
from selfspec.compare import (
    LOGIT_TOLERANCE,
    Rule,
    compare,
    emitted_margins,
    rule_for,
    teacher_forced_logits,
)
from selfspec.decoding import GenerationResult, generate, run_to_end, vanilla
from selfspec.loading import load_model
from selfspec.methods import METHODS, MethodInfo, get_method
from selfspec.prompts import BenchPrompt
from selfspec.sampling import SamplingConfig

PROMPT = "Tell me about the sea."
CFG = SamplingConfig(max_new_tokens=12)
PEER = Rule(LOGIT_TOLERANCE[torch.float32])
DOCS = Path(__file__).parent.parent / "docs" / "bench"


@pytest.fixture(scope="module")
def lm():
    return load_model("tiny-llama", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def reference(lm) -> GenerationResult:
    return run_to_end(generate(lm, PROMPT, vanilla, CFG))


def as_output(result: GenerationResult, tokens: list[int]) -> GenerationResult:
    """`result` with other tokens, as if a method had emitted them."""
    return replace(result, tokens=tokens, stop_reason="length")


def far_token(lm, reference, position: int) -> int:
    """The token our model likes least at `position` of vanilla's output."""
    ids = lm.encode(PROMPT)
    logits = teacher_forced_logits(lm, ids, reference.tokens)
    return int(logits[position].argmin())


def test_the_registry_decides_the_rule():
    assert str(rule_for(get_method("pld"), torch.float32)) == "exact"
    assert str(rule_for(get_method("hf"), torch.bfloat16)) == "tolerance 0.25"
    exact = {name: str(rule_for(info, torch.float32)) == "exact" for name, info in METHODS.items()}
    assert exact == {name: info.ours for name, info in METHODS.items()}
    assert set(exact.values()) == {True, False}


def test_an_identical_output_passes_with_margin_zero(lm, reference):
    ids = lm.encode(PROMPT)
    same = as_output(reference, list(reference.tokens))
    for rule in (Rule(), PEER):
        j = compare(lm, ids, same, reference, rule)
        assert j.exact and j.lossless and j.first_difference is None and j.rule == rule
    peer = compare(lm, ids, same, reference, PEER)
    assert peer.worst is not None and peer.worst.margin == 0.0


def test_the_speed_up_is_the_ratio_of_speeds_and_a_sample_is_not_judged(lm, reference):
    ids = lm.encode(PROMPT)
    faster = replace(reference, seconds=reference.seconds / 2)
    verdict = compare(lm, ids, faster, reference, None)
    assert verdict.speedup == pytest.approx(2.0)
    assert verdict.rule is None and verdict.exact is None and verdict.lossless is None
    assert compare(lm, ids, faster, replace(reference, seconds=0.0), Rule()).speedup is None


@pytest.mark.parametrize("position", [0, 5, 11])
def test_a_planted_wrong_token_fails_both_rules(lm, reference, position):
    ids = lm.encode(PROMPT)
    tokens = list(reference.tokens)
    tokens[position] = far_token(lm, reference, position)
    wrong = as_output(reference, tokens)
    for rule in (Rule(), PEER):
        j = compare(lm, ids, wrong, reference, rule)
        assert not j.exact and not j.lossless, rule
        assert j.first_difference == position
        assert j.worst is not None and j.worst.margin > PEER.tolerance
    # The planted position is judged by its own margin, whatever follows it.
    margins = emitted_margins(teacher_forced_logits(lm, ids, tokens), tokens)
    assert len(margins) == len(tokens) and margins[position] > 1.0


def test_the_worst_position_is_reported_not_the_first(lm, reference):
    ids = lm.encode(PROMPT)
    logits = teacher_forced_logits(lm, ids, reference.tokens)
    tokens = list(reference.tokens)
    tokens[2] = int(logits[2].topk(2).indices[1])  # a near miss first
    tokens[8] = far_token(lm, reference, 8)  # then a far one
    j = compare(lm, ids, as_output(reference, tokens), reference, PEER)
    margins = emitted_margins(teacher_forced_logits(lm, ids, tokens), tokens)
    assert j.first_difference == 2 and margins[2] > 0
    assert j.worst is not None and j.worst.position == 8 == int(margins.argmax())
    assert j.worst.margin == float(margins[8])


def test_only_the_tokens_a_peer_emitted_count(lm, reference):
    """A peer that stopped early is judged on the tokens it emitted, plus the EOS it
    stopped at (by our best EOS logit there); nothing past its stop counts."""
    ids = lm.encode(PROMPT)
    short = as_output(reference, reference.tokens[:6])
    assert compare(lm, ids, short, reference, PEER).lossless
    assert not compare(lm, ids, short, reference, Rule()).lossless  # ours: not exact
    logits = teacher_forced_logits(lm, ids, short.tokens).double()
    margins = emitted_margins(logits, short.tokens, lm.eos_ids)
    assert len(margins) == 7  # the EOS after the sixth token is judged too
    assert margins[6] == logits[6].max() - logits[6, sorted(lm.eos_ids)].max()


def test_a_swap_at_an_exact_tie_passes_for_peers_only(lm, reference, monkeypatch):
    ids = lm.encode(PROMPT)
    logits = teacher_forced_logits(lm, ids, reference.tokens).clone()
    position = 4
    chosen = reference.tokens[position]
    other = int(logits[position].argmin())
    logits[position, other] = logits[position, chosen]  # an exact tie between the two
    monkeypatch.setattr(comparing, "teacher_forced_logits", lambda *_: logits)
    tokens = list(reference.tokens)
    tokens[position] = other
    swapped = as_output(reference, tokens)
    peer = compare(lm, ids, swapped, reference, PEER)
    assert peer.lossless and not peer.exact
    assert peer.worst is not None and peer.worst.margin == 0.0
    assert not compare(lm, ids, swapped, reference, Rule()).lossless  # ours: no tolerance
    # A margin of exactly the tolerance passes; just past it fails.
    logits[position, other] = logits[position, chosen] - 0.25
    margin = float(logits[position, chosen].double() - logits[position, other].double())
    assert compare(lm, ids, swapped, reference, Rule(margin)).lossless
    assert not compare(lm, ids, swapped, reference, Rule(margin / 2)).lossless


def planting(position: int):
    """A method that decodes as vanilla but commits a wrong token at `position`."""

    def run(lm, ids, cfg):
        for i, chunk in enumerate(vanilla(lm, ids, cfg)):
            if i == position:
                tok = (chunk.tokens[0] + 1) % lm.engine.cfg.vocab_size
                chunk = replace(chunk, tokens=[tok])
            yield chunk

    return run


def test_the_report_judges_ours_exactly_and_peers_by_tolerance(lm, monkeypatch):
    prompts = [BenchPrompt("p1", "qa", PROMPT), BenchPrompt("p2", "math", "Two and two?")]
    monkeypatch.setitem(METHODS, "ours-bad", MethodInfo("ours-bad", planting(3), "", ours=True))
    monkeypatch.setitem(METHODS, "peer-bad", MethodInfo("peer-bad", planting(3), "", ours=False))
    report = run_bench(lm, prompts, ["vanilla", "pld", "hf", "ours-bad", "peer-bad"], CFG)
    report = json.loads(json.dumps(report.to_json()))  # what a report file holds
    assert report["schema"] == REPORT_SCHEMA
    methods = report["methods"]
    assert {m: methods[m]["rule"] for m in methods} == {
        "vanilla": "exact",
        "pld": "exact",
        "hf": "tolerance 0.001",
        "ours-bad": "exact",
        "peer-bad": "tolerance 0.001",
    }
    for name in ("pld", "hf"):  # vanilla, the reference, is not a finding
        assert methods[name]["lossless"] is True and methods[name]["exact"] == 2, name
    assert methods["hf"]["worst"]["margin"] == 0.0
    for name in ("ours-bad", "peer-bad"):
        m = methods[name]
        assert m["lossless"] is False and m["exact"] == 0
        assert all(row["first_difference"] == 3 for row in m["prompts"])
        assert m["worst"]["margin"] > 0
    table = markdown_table(report)
    assert "| exact |" in table and "| tolerance 0.001 |" in table
    assert "Older report" not in table


def test_older_reports_still_render_and_say_so():
    old = json.loads((DOCS / "cpu-fp32-subset.json").read_text())
    assert "schema" not in old
    table = markdown_table(old)
    assert table.startswith("| method | tok/s | speed-up |")
    assert "Older report (schema 1)" in table and "0.001" in table
    assert "| `llamacpp` |" in table
