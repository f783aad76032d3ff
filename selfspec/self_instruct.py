"""Self-instruct training text for the Kangaroo adapter: the model writes its own corpus.

The adapter learns to predict what the full model would say, so the best training text is
the model's own, on the kinds of requests drafting meets. The notes alone give few
positions to learn from, and an adapter trained on them for many epochs fits those and
little else. Here the model first writes a paragraph about each topic of a list, and the
paragraphs then become summary and quiz requests next to explanation and fact requests
about the same topic: five sequences per topic (prompt and reply, both learnt from),
several times the notes' positions. How much that raised the draft's agreement with the
full model is measured in docs/kangaroo.md (Self-instruct text).

The topics (`data/topics.txt`) avoid those of the benchmark's prompts, so the benchmark
stays text the adapter has not seen. Generation is greedy and batched (the Hugging Face
twin's `generate` over left-padded prompts, several times the throughput of one reply at
a time on a CPU); the text is only training material, so it need not be bit-identical to our
engine's greedy text, and the training targets come from our engine anyway.
"""

from __future__ import annotations

from pathlib import Path

import torch

from selfspec.loading import LoadedModel

__all__ = ["TOPICS", "PARAGRAPH", "TASKS", "load_topics", "task_prompts", "batch_greedy"]

TOPICS = Path(__file__).parent / "data" / "topics.txt"
PARAGRAPH = "Write a short paragraph about {topic}."
TASKS = (
    "Summarize the following paragraph in two sentences.\n\n{text}",
    "Write two review questions about the note below. For each question write one line "
    "'Question: ...' and one line 'Answer: ...'. Keep each answer short and based only on "
    "the note.\n\n{text}",
    "Explain {topic} to a ten-year-old.",
    "What are three interesting facts about {topic}?",
)


def load_topics(path: Path = TOPICS) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def task_prompts(topic: str, paragraph: str) -> list[str]:
    """The second-stage requests about one topic, given the model's paragraph on it."""
    return [task.format(topic=topic, text=paragraph.strip()) for task in TASKS]


@torch.inference_mode()
def batch_greedy(
    lm: LoadedModel, prompts: list[str], max_new_tokens: int, batch: int = 64
) -> list[list[int]]:
    """Greedy continuations (up to the first stop token) of the prompts, `batch` at a time
    through the Hugging Face twin, prompts left-padded and masked."""
    outputs = []
    pad = min(lm.eos_ids) if lm.eos_ids else 0
    for i in range(0, len(prompts), batch):
        chunk = [lm.encode(p) for p in prompts[i : i + batch]]
        width = max(map(len, chunk))
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk], device=lm.device)
        lengths = torch.tensor([len(p) for p in chunk], device=lm.device)
        mask = torch.arange(width, device=lm.device)[None] >= (width - lengths)[:, None]
        out = lm.hf_model.generate(
            input_ids=ids,
            attention_mask=mask.long(),
            do_sample=False,
            max_new_tokens=max_new_tokens,
            pad_token_id=pad,
            eos_token_id=sorted(lm.eos_ids) or None,
            cache_implementation="static",  # faster on a CPU than the growing cache
        )
        for row in out[:, width:].tolist():
            stop = next((j for j, t in enumerate(row) if t in lm.eos_ids), len(row))
            outputs.append(row[:stop])
    return outputs
