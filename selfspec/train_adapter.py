"""Training the Kangaroo adapter by self-distillation: settings, the loop, checkpoints.

The corpus (prompts and the full model's greedy replies, with the frozen model's states)
is `selfspec.adapter_corpus`; the loss and the held-out evaluation are
`selfspec.adapter_objective`. Each step here runs only the adapter (teacher-forced over
whole sequences) and the frozen head, with AdamW, warm-up then cosine decay, and gradient
clipping; a checkpoint beside the output at every evaluation makes a run resumable.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from selfspec.adapter import AdapterSettings, KangarooAdapter, save_adapter
from selfspec.adapter_corpus import (
    Sequence,
    add_states,
    build_corpus,
    corpus_prompts,
    progress_bar,
    self_instruct_corpus,
)
from selfspec.adapter_objective import LOSSES, batch_logits, distill_loss, evaluate, learn_positions
from selfspec.errors import BadInputError
from selfspec.loading import LoadedModel
from selfspec.profiles import model_key
from selfspec.self_instruct import load_topics

__all__ = [
    "BUILTIN_DATA",
    "TrainProgress",
    "TrainSettings",
    "frequent_tokens",
    "split",
    "train_adapter",
]

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
    notes: tuple[str, ...] = ()  # note texts for the corpus (see corpus_prompts)
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
            shipped = len(load_topics())
            if not 0 < self.topics <= shipped:
                raise BadInputError(
                    f"Self-instruct text takes 1 to {shipped} topics (the shipped list), "
                    f"got {self.topics}."
                )


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
    cfg = lm.engine.cfg
    settings.check(cfg.n_layers)
    out = Path(out)
    start_time = time.perf_counter()
    torch.manual_seed(settings.seed)
    if sequences is None:
        prompts = corpus_prompts(
            settings.notes, settings.corpus, settings.max_prompt_chars, settings.builtin
        )
        cache = out.with_name(out.stem + ".corpus.json")
        sequences = build_corpus(lm, prompts, settings.max_new_tokens, cache, progress)
        if settings.topics:
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
    bar = progress_bar(range(step, settings.steps), progress, "training adapter")
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
        f"{BUILTIN_DATA + ' + ' if s.builtin else ''}{len(s.notes)} notes{extra}: "
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
