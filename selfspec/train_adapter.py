"""Training the Kangaroo adapter by self-distillation.

The full model writes greedy continuations of a prompt corpus (the built-in prompt set, the
study seed notes turned into "Summarize: ..." / "Write a question about: ..." requests, an
optional user file, and optionally its own self-instruct text, see `selfspec.self_instruct`),
cached to disk once. The frozen model then gives, for every
sequence, the exit-layer hidden states (the adapter's input) and the last layer's states
at the generated positions (the targets' source); both are computed once under no_grad.
Each step runs only the adapter (teacher-forced over whole sequences) and the frozen head.

Loss, at the positions that predict a generated token, with p the full model's next-token
softmax and q the adapter's:

- ``ce``: soft cross-entropy  H(p, q) = -sum_x p(x) log q(x)
- ``kl``: KL(p || q) = sum_x p(x) log p(x) - sum_x p(x) log q(x) = H(p, q) - H(p)

They differ by the target entropy H(p), which does not depend on the adapter: the two
losses have the same gradients (only the reported value shifts). KL reads as a distance
(0 when the draft matches), CE is the paper's formulation.

Progress reports the held-out loss and the expected acceptance sum_x min(p(x), q(x)), the
probability that speculative sampling accepts a draft token at that position.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from selfspec.adapter import AdapterSettings, KangarooAdapter, save_adapter
from selfspec.errors import BadInputError
from selfspec.loading import LoadedModel

__all__ = [
    "BUILTIN_DATA",
    "TrainSettings",
    "Sequence",
    "corpus_prompts",
    "build_corpus",
    "self_instruct_corpus",
    "write_one_by_one",
    "distill_loss",
    "expected_acceptance",
    "train_adapter",
    "TrainProgress",
    "split",
    "add_states",
    "batch_logits",
    "evaluate",
    "frequent_tokens",
    "learn_positions",
]

LOSSES = ("ce", "kl")
BUILTIN_DATA = "built-in prompts"  # how AdapterSettings.data names the benchmark's prompts


@dataclass
class TrainSettings:
    exit_layer: int
    steps: int = 300
    loss: str = "ce"
    lr: float = 1e-3  # tiny models and CPU; the paper's 3e-5..5e-5 is for 7B+ on GPUs
    seed: int = 0
    batch: int = 8
    warmup: int = 20
    clip: float = 1.0
    weight_decay: float = 0.01
    max_new_tokens: int = 96  # continuation length per prompt
    max_prompt_chars: int = 1200
    held_out: float = 0.15
    eval_every: int = 25
    init: str = "layer"
    head_tokens: int = 0  # restricted draft head size (0: full head)
    eta: float = 0.6
    corpus: str | None = None  # user file: JSONL prompt set or plain text, one prompt a line
    prompt_text: bool = True  # learn from the prompts' positions too (see learn_positions)
    builtin: bool = True  # the built-in prompt set in the corpus (see corpus_prompts)
    topics: int = 0  # self-instruct text on this many shipped topics (see self_instruct)

    def check(self, n_layers: int) -> None:
        if not 0 < self.exit_layer < n_layers:
            raise BadInputError(
                f"The exit layer must be between 1 and {n_layers - 1} for this model, got "
                f"{self.exit_layer}."
            )
        if self.loss not in LOSSES:
            raise BadInputError(f"Unknown loss '{self.loss}': use ce or kl.")
        if self.steps < 1 or self.batch < 1 or self.lr <= 0:
            raise BadInputError("steps and batch must be at least 1 and lr positive.")
        if self.topics:
            from selfspec.self_instruct import load_topics

            shipped = len(load_topics())
            if not 0 < self.topics <= shipped:
                raise BadInputError(
                    f"Self-instruct text takes 1 to {shipped} topics (the shipped list), "
                    f"got {self.topics}."
                )


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


# ----------------------------------------------------------------------------- corpus
def corpus_prompts(
    corpus: str | None = None, max_chars: int = 1200, builtin: bool = True
) -> list[str]:
    """The built-in prompts, the seed notes as summary / question requests, a user file.

    `builtin=False` leaves out the built-in prompt set, which is also the benchmark's: an
    adapter trained without it can be benchmarked on text it has not seen."""
    from selfspec.prompts import load_prompts
    from study.notes import seed_notes

    prompts = [p.prompt for p in load_prompts()] if builtin else []
    for note in seed_notes():
        for section in re.split(r"\n(?=## )", note.body):
            text = section.strip()[:max_chars]
            if text:
                prompts += [f"Summarize: {text}", f"Write a question about: {text}"]
    if corpus:
        prompts += _user_prompts(Path(corpus), max_chars)
    return prompts


def _user_prompts(path: Path, max_chars: int) -> list[str]:
    if path.suffix == ".jsonl":
        from selfspec.prompts import load_prompts

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
    from selfspec.decoding import generate, run_to_end
    from selfspec.methods import FAST_METHOD, get_method
    from selfspec.sampling import SamplingConfig

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
    from selfspec.decoding import prepare_prompt
    from selfspec.profiles import model_key
    from selfspec.sampling import SamplingConfig

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
    for i in _bar(range(0, len(kept), chunk), progress, "generating corpus"):
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
    from selfspec.self_instruct import PARAGRAPH, batch_greedy, task_prompts

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


# ----------------------------------------------------------------------------- losses
def distill_loss(q_logits: Tensor, p_logits: Tensor, kind: str = "ce") -> Tensor:
    """Mean soft cross-entropy H(p, q) (or KL(p || q)) over rows of logits [M, V]."""
    log_q = F.log_softmax(q_logits.float(), dim=-1)
    log_p = F.log_softmax(p_logits.float(), dim=-1)
    ce = -(log_p.exp() * log_q).sum(-1)  # [M]
    if kind == "kl":
        ce = ce + (log_p.exp() * log_p).sum(-1)  # minus the target entropy
    return ce.mean()


def expected_acceptance(q_logits: Tensor, p_logits: Tensor, ids: Tensor | None = None) -> float:
    """Mean over rows of sum_x min(p(x), q(x)): the chance a sampled draft is accepted.

    q_logits [M, N] may cover only the token ids `ids` (a restricted head) while p_logits
    [M, V] covers the vocabulary: q is zero elsewhere, so only p at `ids` can match."""
    p = torch.softmax(p_logits.float(), dim=-1)
    if ids is not None:
        p = p[:, ids]
    q = torch.softmax(q_logits.float(), dim=-1)
    return float(torch.minimum(p, q).sum(-1).mean())


def _batch(sequences: list[Sequence], generated_only: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Padded exit states [B, T, C], a mask [B, T] of the positions learnt from (those
    predicting generated tokens, or all from each sequence's `first`), and the matching
    last-layer states [M, C] (M = mask.sum())."""
    t = max(len(s.ids) for s in sequences)
    h0 = sequences[0].h_exit
    h = h0.new_zeros(len(sequences), t, h0.shape[-1])
    mask = torch.zeros(len(sequences), t, dtype=torch.bool, device=h0.device)
    lasts = []
    for i, s in enumerate(sequences):
        start = s.n_prompt - 1 if generated_only else s.first
        h[i, : len(s.ids)] = s.h_exit
        mask[i, start : len(s.ids) - 1] = True
        lasts.append(s.h_last[start:])
    return h, mask, torch.cat(lasts)


def learn_positions(sequences: list[Sequence]) -> None:
    """Let training learn from the prompts' text too, not only from the generated tokens.

    The target is the full model's next-token distribution wherever it is computed, and
    the prompts (notes, paragraphs, questions) are text of the kind the draft will meet:
    on the shipped corpus this adds about twice as many positions as the generations
    give, at no generation cost. Only the prefix that every sequence shares (the chat
    template's system prompt) is left out: it would count the same positions ~100 times.
    Held-out numbers are still measured on generated tokens only.
    """
    ids = [s.ids for s in sequences]
    shared = 0
    while all(len(x) > shared + 1 and x[shared] == ids[0][shared] for x in ids):
        shared += 1
    for s in sequences:
        s.first = min(shared, s.n_prompt - 1)


def batch_logits(
    adapter: KangarooAdapter,
    lm: LoadedModel,
    sequences: list[Sequence],
    generated_only: bool = True,
) -> tuple[Tensor, Tensor]:
    """Adapter logits and target logits [M, N] at the generated positions of a batch (or
    at every position from each sequence's `first`, with generated_only=False).

    With a restricted draft head (N frequent tokens) both are scored over those N tokens
    only, as drafting scores them: the adapter then learns the target's distribution
    renormalised over its own vocabulary, and a step costs N / V of the full head's
    products. Without one, N = V.
    """
    engine = lm.engine
    head = adapter.head(engine)
    h, mask, h_last = _batch(sequences, generated_only)
    q_logits = engine.logits(adapter(engine, h)[mask], head)  # [M, N]
    with torch.no_grad():
        p_logits = engine.logits(h_last, head)  # [M, N]
    return q_logits, p_logits


@torch.no_grad()
def evaluate(
    adapter: KangarooAdapter, lm: LoadedModel, sequences: list[Sequence], kind: str, batch: int
) -> tuple[float, float]:
    """Held-out loss and expected acceptance, weighted by generated positions.

    The acceptance compares the draft with the full model's distribution over the whole
    vocabulary, so target mass outside a restricted head counts as rejected."""
    loss = acc = 0.0
    total = sum(s.n_gen for s in sequences)
    ids = adapter.head_tokens if adapter.head_tokens.numel() else None
    for i in range(0, len(sequences), batch):
        chunk = sequences[i : i + batch]
        q, p = batch_logits(adapter, lm, chunk)
        loss += float(distill_loss(q, p, kind)) * q.shape[0]
        if ids is not None:
            p = lm.engine.logits(torch.cat([s.h_last[s.n_prompt - 1 :] for s in chunk]))
        acc += expected_acceptance(q, p, ids) * q.shape[0]
    return loss / total, acc / total


# ----------------------------------------------------------------------------- training
def split(
    sequences: list[Sequence], held_out: float, seed: int
) -> tuple[list[Sequence], list[Sequence]]:
    """Seeded train / held-out split by sequence."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(sequences), generator=g).tolist()
    n_test = max(1, math.ceil(held_out * len(sequences)))
    if len(sequences) < 2:
        raise BadInputError("The corpus needs at least two generated sequences.")
    return [sequences[i] for i in order[n_test:]], [sequences[i] for i in order[:n_test]]


def frequent_tokens(
    sequences: list[Sequence], n: int, vocab: int, device: torch.device | str
) -> Tensor:
    """The n most frequent generated tokens (sorted ids): the restricted draft head."""
    counts = torch.zeros(vocab, dtype=torch.long)
    for s in sequences:
        counts += torch.bincount(torch.tensor(s.ids[s.n_prompt :]), minlength=vocab)[:vocab]
    return counts.topk(min(n, vocab)).indices.sort().values.to(device)


def _schedule(step: int, s: TrainSettings) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < s.warmup:
        return (step + 1) / s.warmup
    frac = (step - s.warmup) / max(1, s.steps - s.warmup)
    return 0.1 + 0.45 * (1 + math.cos(math.pi * min(frac, 1.0)))


@dataclass(frozen=True)
class TrainProgress:
    """One training step as a caller sees it (the app draws its curves from these)."""

    step: int
    loss: float  # training loss of this step's batch
    held_out_loss: float  # as of the latest evaluation
    expected_acceptance: float  # held-out mean of sum_x min(p(x), q(x)), latest evaluation


def train_adapter(
    lm: LoadedModel,
    settings: TrainSettings,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    sequences: list[Sequence] | None = None,
    should_stop: Callable[[], bool] | None = None,
    report: Callable[[TrainProgress], None] | None = None,
) -> KangarooAdapter:
    """Train, checkpointing beside `out`; write the adapter (safetensors + JSON) to `out`.

    `should_stop` is asked before every step, so a caller (the app's Cancel button) can end
    training early: the adapter is then evaluated, checkpointed and saved as trained so far,
    with `steps` recording the steps actually done, and `resume=True` continues it.
    `report` hears every step's losses and the latest held-out numbers.
    """
    from selfspec.profiles import model_key

    cfg = lm.engine.cfg
    settings.check(cfg.n_layers)
    out = Path(out)
    start_time = time.perf_counter()
    torch.manual_seed(settings.seed)
    if sequences is None:
        prompts = corpus_prompts(settings.corpus, settings.max_prompt_chars, settings.builtin)
        cache = out.with_name(out.stem + ".corpus.json")
        sequences = build_corpus(lm, prompts, settings.max_new_tokens, cache, progress)
        if settings.topics:
            from selfspec.self_instruct import load_topics

            topics = load_topics()[: settings.topics]
            sequences += self_instruct_corpus(
                lm,
                topics,
                settings.max_new_tokens,
                out.with_name(out.stem + ".self.json"),
                progress,
            )
    add_states(lm, sequences, settings.exit_layer)
    if settings.prompt_text:
        learn_positions(sequences)
    train, test = split(sequences, settings.held_out, settings.seed)
    meta = AdapterSettings(
        model=model_key(lm),
        n_layers=cfg.n_layers,
        exit_layer=settings.exit_layer,
        dim=cfg.dim,
        eta=settings.eta,
        init=settings.init,
        data=_describe(settings, train, test),
        loss=settings.loss,
        steps=settings.steps,
        lr=settings.lr,
        seed=settings.seed,
        head_tokens=settings.head_tokens,
    )
    adapter = KangarooAdapter(lm.engine, meta, seed=settings.seed)
    if settings.head_tokens:
        adapter.head_tokens = frequent_tokens(
            train, settings.head_tokens, cfg.vocab_size, lm.device
        )
    params = [p for p in adapter.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        params, lr=settings.lr, betas=(0.9, 0.95), weight_decay=settings.weight_decay
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: _schedule(i, settings))
    gen = torch.Generator().manual_seed(settings.seed)
    ckpt = out.with_name(out.stem + ".ckpt.pt")
    step = _resume(ckpt, adapter, opt, sched, gen, settings) if resume else 0
    loss_eval, acc = evaluate(adapter, lm, test, settings.loss, settings.batch)
    bar = _bar(range(step, settings.steps), progress, "training adapter")
    for step in bar:
        if should_stop is not None and should_stop():
            loss_eval, acc = evaluate(adapter, lm, test, settings.loss, settings.batch)
            _save_checkpoint(ckpt, adapter, opt, sched, gen, step, settings)
            meta = replace(meta, steps=step)
            break
        adapter.train()
        idx = torch.randint(len(train), (min(settings.batch, len(train)),), generator=gen)
        batch = [train[i] for i in idx.tolist()]
        q, p = batch_logits(adapter, lm, batch, generated_only=not settings.prompt_text)
        loss = distill_loss(q, p, settings.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, settings.clip)
        opt.step()
        sched.step()
        if (step + 1) % settings.eval_every == 0 or step + 1 == settings.steps:
            loss_eval, acc = evaluate(adapter, lm, test, settings.loss, settings.batch)
            _save_checkpoint(ckpt, adapter, opt, sched, gen, step + 1, settings)
        if report is not None:
            report(TrainProgress(step + 1, loss.item(), loss_eval, acc))
        if progress:
            bar.set_postfix(
                loss=f"{loss.item():.3f}", held_out=f"{loss_eval:.3f}", acc=f"{acc:.3f}"
            )
    adapter.eval().requires_grad_(False)
    adapter.settings = replace(
        meta,
        held_out_loss=loss_eval,
        expected_acceptance=acc,
        seconds=round(time.perf_counter() - start_time, 1),
    )
    save_adapter(adapter, out)
    return adapter


def _describe(s: TrainSettings, train: list[Sequence], test: list[Sequence]) -> str:
    extra = f" + {s.corpus}" if s.corpus else ""
    if s.topics:
        extra += f" + self-instruct text on {s.topics} topics"
    learnt = (
        f", learning also at {sum(x.n_prompt - 1 - x.first for x in train)} prompt positions"
        if s.prompt_text
        else ""
    )
    return (
        f"self-distillation on greedy continuations (<= {s.max_new_tokens} tokens) of the "
        f"{BUILTIN_DATA + ' + ' if s.builtin else ''}seed notes{extra}: "
        f"{len(train)} train / {len(test)} held-out "
        f"sequences, {sum(x.n_gen for x in train)} / {sum(x.n_gen for x in test)} generated "
        f"tokens{learnt}"
    )


def _save_checkpoint(path: Path, adapter, opt, sched, gen, step: int, s: TrainSettings) -> None:
    state = {
        "adapter": adapter.state_dict(),
        "opt": opt.state_dict(),
        "sched": sched.state_dict(),
        "gen": gen.get_state(),
        "step": step,
        "settings": asdict(s),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)


def _resume(path: Path, adapter, opt, sched, gen, s: TrainSettings) -> int:
    """Restore a checkpoint made with the same settings; 0 (a fresh start) if none."""
    if not path.is_file():
        return 0
    state = torch.load(path, map_location=adapter.wqkv.device, weights_only=False)
    if state["settings"] != asdict(s):
        raise BadInputError(
            f"The checkpoint {path} was made with other settings; rerun without --resume "
            "(or with the same settings) to continue it."
        )
    adapter.head_tokens = state["adapter"]["head_tokens"]
    adapter.load_state_dict(state["adapter"])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    gen.set_state(state["gen"])
    return int(state["step"])


def _bar(items, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(items, desc=desc, disable=not enabled, dynamic_ncols=True)
