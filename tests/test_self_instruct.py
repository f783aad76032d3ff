"""Self-instruct corpus: batched greedy text, the two stages, caching, settings checks."""

from __future__ import annotations

import pytest

import selfspec.self_instruct as si
from selfspec.adapter_corpus import self_instruct_corpus
from selfspec.errors import BadInputError
from selfspec.train_adapter import TrainSettings
from tests.model_helpers import tiny


def one_at_a_time(lm, prompts, max_new_tokens):
    return [si.batch_greedy(lm, [p], max_new_tokens, batch=1)[0] for p in prompts]


def test_batched_greedy_equals_one_prompt_at_a_time():
    # Prompts of different lengths share a batch: the padding must change nothing.
    lm = tiny("tiny-llama")
    prompts = ["a", "the cat sat on the mat", "abc abc abc abc", "xyz. xyz."]
    assert si.batch_greedy(lm, prompts, 12, batch=4) == one_at_a_time(lm, prompts, 12)


def test_replies_stop_at_the_first_stop_token(monkeypatch):
    lm = tiny("tiny-llama")
    full = si.batch_greedy(lm, ["hello there"], 24)[0]
    stop = full[5]
    monkeypatch.setattr(lm, "eos_ids", frozenset({stop}))
    cut = si.batch_greedy(lm, ["hello there"], 24)[0]
    assert cut == full[: full.index(stop)]


def test_corpus_has_paragraphs_then_requests_about_them_and_is_reused(tmp_path, monkeypatch):
    lm = tiny("tiny-llama")
    topics = ["owls", "salt"]
    cache = tmp_path / "a.self.json"
    seqs = self_instruct_corpus(lm, topics, 10, cache)
    paragraphs, requests = seqs[: len(topics)], seqs[len(topics) :]
    assert len(requests) == len(topics) * len(si.TASKS)
    for topic, para in zip(topics, paragraphs, strict=True):
        assert lm.decode(para.ids[: para.n_prompt]).endswith(si.PARAGRAPH.format(topic=topic))
    text = lm.decode(paragraphs[0].ids[paragraphs[0].n_prompt :]).strip()
    summary = lm.decode(requests[0].ids[: requests[0].n_prompt])
    assert text and text in summary  # the second stage quotes the model's paragraph
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.self-paragraphs.json",
        "a.self-requests.json",
    ]
    monkeypatch.setattr(si, "batch_greedy", None)  # a second run must not generate
    again = self_instruct_corpus(lm, topics, 10, cache)
    assert [(s.ids, s.n_prompt) for s in again] == [(s.ids, s.n_prompt) for s in seqs]


def test_the_shipped_topics_are_not_the_benchmarks():
    from selfspec.prompts import load_prompts

    topics = si.load_topics()
    assert len(topics) == len(set(topics)) >= 100
    bench = " ".join(p.prompt.lower() for p in load_prompts())
    for word in ("honeybee", "printing press", "coral", "bicycle", "sleep"):
        assert word in bench and not any(word in t.lower() for t in topics)


@pytest.mark.parametrize("topics", [-1, 10_000])
def test_topic_count_out_of_range_is_refused(topics):
    with pytest.raises(BadInputError, match="topics"):
        TrainSettings(exit_layer=1, topics=topics).check(4)
