"""The self-distillation corpus for the Kangaroo adapter: prompts, the full model's replies.

The full model writes greedy continuations of a prompt corpus (the built-in prompt set,
notes turned into "Summarize: ..." / "Write a question about: ..." requests, an optional
user file, and optionally its own self-instruct text, see `selfspec.self_instruct`),
cached to disk once. The frozen model then gives, for every sequence, the exit-layer
hidden states (the adapter's input) and the last layer's states at the generated
positions (the targets' source), computed once under no_grad.

The notes are passed in as texts: the decoding library knows nothing of where a caller
keeps them (the app's seed notes, a folder the CLI is given).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from selfspec.decoding import generate, prepare_prompt, run_to_end
from selfspec.errors import BadInputError
from selfspec.loading import LoadedModel
from selfspec.methods import FAST_METHOD, get_method
from selfspec.profiles import model_key
from selfspec.prompts import load_prompts
from selfspec.sampling import SamplingConfig
from selfspec.self_instruct import PARAGRAPH, batch_greedy, task_prompts

__all__ = [
    "Sequence",
    "Writer",
    "add_states",
    "build_corpus",
    "corpus_prompts",
    "progress_bar",
    "read_notes",
    "self_instruct_corpus",
    "write_one_by_one",
]


@dataclass
class Sequence:
    """A prompt and the full model's greedy continuation, with the frozen model's states."""

    ids: list[int]
    n_prompt: int
    h_exit: Tensor | None = None  # [T, C] hidden states after layer exit_layer - 1
    h_last: Tensor | None = None  # [T - 1, C] last-layer states at positions 0 .. T - 2,
    # each predicting the next token
    first: int = 0  # the first position training learns from (see `learn_positions`)

    @property
    def n_gen(self) -> int:
        return len(self.ids) - self.n_prompt


def corpus_prompts(
    notes: Iterable[str] = (),
    corpus: str | None = None,
    max_chars: int = 1200,
    builtin: bool = True,
) -> list[str]:
    """The built-in prompts, notes as summary / question requests, a user file.

    `notes` are note texts (the app passes its seed notes, the CLI the files of `--notes`);
    each ``## `` section of a note becomes two requests. `builtin=False` leaves out the
    built-in prompt set, which is also the benchmark's: an adapter trained without it can
    be benchmarked on text it has not seen."""
    prompts = [p.prompt for p in load_prompts()] if builtin else []
    for note in notes:
        for section in re.split(r"\n(?=## )", note):
            text = section.strip()[:max_chars]
            if text:
                prompts += [f"Summarize: {text}", f"Write a question about: {text}"]
    if corpus:
        prompts += _user_prompts(Path(corpus), max_chars)
    return prompts


def _user_prompts(path: Path, max_chars: int) -> list[str]:
    if path.suffix == ".jsonl":
        return [p.prompt[:max_chars] for p in load_prompts(path)]
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"Cannot read the corpus file {path}: {exc}") from exc
    return [line.strip()[:max_chars] for line in lines if line.strip()]


Writer = Callable[[LoadedModel, list[str], int], list[list[int]]]


def write_one_by_one(lm: LoadedModel, prompts: list[str], max_new_tokens: int) -> list[list[int]]:
    """Greedy replies with the product's fast lossless method (prompt lookup): the same
    text as plain decoding, sooner."""
    cfg = SamplingConfig(max_new_tokens=max_new_tokens)
    method = get_method(FAST_METHOD).run
    return [run_to_end(generate(lm, p, method, cfg)).tokens for p in prompts]


def build_corpus(
    lm: LoadedModel,
    prompts: list[str],
    max_new_tokens: int,
    cache: Path | None,
    progress: bool = False,
    writer: Writer = write_one_by_one,
    chunk: int = 1,
) -> list[Sequence]:
    """Greedy continuations of each prompt by the full model; read from cache if it matches.

    `writer` turns prompts into replies, `chunk` prompts per call (the progress bar's
    step); prompts longer than the model's context are left out."""
    key = hashlib.sha256(json.dumps([model_key(lm), max_new_tokens, prompts]).encode()).hexdigest()
    if cache is not None and cache.is_file():
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            return [Sequence(ids, n) for ids, n in stored["sequences"]]
    cfg = SamplingConfig(max_new_tokens=max_new_tokens)
    kept = []
    for prompt in prompts:
        try:
            kept.append((prompt, prepare_prompt(lm, prompt, cfg)))
        except BadInputError:  # longer than this model's context: leave it out
            continue
    sequences = []
    for i in progress_bar(range(0, len(kept), chunk), progress, "generating corpus"):
        part = kept[i : i + chunk]
        replies = writer(lm, [prompt for prompt, _ in part], max_new_tokens)
        for (_, ids), out in zip(part, replies, strict=True):
            if out:
                sequences.append(Sequence(ids + out, len(ids)))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        rows = [[s.ids, s.n_prompt] for s in sequences]
        cache.write_text(json.dumps({"key": key, "sequences": rows}))
    return sequences


def self_instruct_corpus(
    lm: LoadedModel,
    topics: list[str],
    max_new_tokens: int,
    cache: Path | None,
    progress: bool = False,
) -> list[Sequence]:
    """The model's own paragraphs on the topics, then its replies to requests about them
    (see `selfspec.self_instruct`); each stage cached like `build_corpus`."""

    def stage(name: str, prompts: list[str]) -> list[Sequence]:
        path = cache.with_name(f"{cache.stem}-{name}.json") if cache else None
        return build_corpus(lm, prompts, max_new_tokens, path, progress, batch_greedy, 64)

    first = stage("paragraphs", [PARAGRAPH.format(topic=t) for t in topics])
    paragraphs = {tuple(s.ids[: s.n_prompt]): lm.decode(s.ids[s.n_prompt :]) for s in first}
    requests = []
    for topic in topics:
        text = paragraphs.get(tuple(lm.encode(PARAGRAPH.format(topic=topic))))
        if text:
            requests += task_prompts(topic, text)
    return first + stage("requests", requests)


def read_notes(folder: str | Path) -> list[str]:
    """The text of every Markdown or text file under `folder` (sorted by path), each
    without the front matter block a Markdown note may open with."""
    root = Path(folder)
    if not root.is_dir():
        raise BadInputError(f"No notes folder at {root}: give a folder of .md or .txt files.")
    texts = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in (".md", ".markdown", ".txt"):
            texts.append(_without_front_matter(path.read_text(encoding="utf-8")))
    return texts


def _without_front_matter(text: str) -> str:
    lines = text.splitlines()
    if lines and lines[0].strip() == "---":
        end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
        if end is not None:
            lines = lines[end + 1 :]
    return "\n".join(lines)


@torch.no_grad()
def add_states(lm: LoadedModel, sequences: list[Sequence], exit_layer: int) -> None:
    """The frozen model's exit-layer and last-layer states, once per sequence."""
    engine = lm.engine
    for s in sequences:
        cache = engine.new_cache(len(s.ids))
        x = torch.tensor([s.ids], device=engine.device)  # [1, T]
        h = engine.run_layers(engine.embed(x), cache, 0, stop=exit_layer)  # [1, T, C]
        last = engine.run_layers(h, cache, 0, start=exit_layer)
        s.h_exit = h[0]
        s.h_last = last[0, :-1]  # [T - 1, C]


def progress_bar(items, enabled: bool, desc: str):
    """A progress bar on stderr over `items` (silent when not `enabled`)."""
    return tqdm(items, desc=desc, disable=not enabled, dynamic_ncols=True)
