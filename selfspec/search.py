"""Layer search: which sub-layers the skip-layer draft should leave out (optuna, TPE).

The search space is the 2L binary choices (each attention and each MLP sub-layer), with
the first and last layer never skipped. Two objectives:

* `proxy` (cheap, as in SWIFT): the full model generates greedy text on calibration
  prompts once; each trial runs the skipped model teacher-forced over that text in one
  pass and measures matchness (share of positions where its argmax equals the full
  model's). Matchness is then traded against the draft's cost with the standard
  speculative-decoding estimate: a draft of length gamma with per-token acceptance a
  commits (1 - a^(gamma+1)) / (1 - a) tokens per step, at a cost of gamma * c (draft
  passes, c = the draft's share of the model's weights) plus one verification pass over
  gamma + 1 tokens (its cost relative to a one-token pass is measured at the start). The
  score is that estimated speed-up over plain decoding.
* `speed` (as in Draft & Verify): measured tokens/s of skip decoding on the calibration
  prompts, over vanilla's measured once; slower but what one finally cares about.

Trials live in an optuna SQLite file, so an interrupted search resumes where it stopped
and loses no finished trial. The best skip set is saved as the model's profile, with a
plain statement when nothing beats plain decoding.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from selfspec.decoding import generate, run_to_end, vanilla
from selfspec.drafters.skip import AdaptiveThreshold, SkipLayerDrafter
from selfspec.errors import BadInputError
from selfspec.kv_cache import KVCache
from selfspec.loading import LoadedModel
from selfspec.model import SkipSet
from selfspec.profiles import SkipProfile, model_key, profile_path, save_profile
from selfspec.prompts import load_prompts
from selfspec.sampling import SamplingConfig
from selfspec.speculative import speculative

__all__ = [
    "Calibration",
    "SearchProgress",
    "SearchSettings",
    "calibrate",
    "matchness",
    "run_search",
]

OBJECTIVES = ("proxy", "speed")


@dataclass(frozen=True)
class SearchProgress:
    """One finished trial as a caller sees it (the app plots these, the CLI prints them)."""

    trial: int  # 1-based, counting the trials of earlier runs of a resumed search
    trials: int  # the search's total (`SearchSettings.trials`)
    score: float
    best: float
    best_trial: int

    def __str__(self) -> str:
        return (
            f"trial {self.trial}: score {self.score:.3f} "
            f"(best {self.best:.3f} at trial {self.best_trial})"
        )


@dataclass(frozen=True)
class SearchSettings:
    trials: int = 200
    objective: str = "proxy"
    prompts: int = 4  # calibration prompts taken from the built-in set
    tokens: int = 32  # greedy tokens the full model generates per calibration prompt
    gamma: int = 6  # draft length assumed by the proxy's speed-up estimate
    seed: int = 0
    verify_cost: float | None = None  # None: measure (gamma+1)-token pass / one-token pass

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise BadInputError(f"objective must be one of {OBJECTIVES}, got '{self.objective}'.")
        if self.trials < 1:
            raise BadInputError(f"trials must be at least 1, got {self.trials}.")


@dataclass
class Calibration:
    sequences: list[list[int]]  # prompt + full-model greedy continuation
    starts: list[int]  # where each continuation begins
    prompts: list[str]
    verify_cost: float  # time of a (gamma+1)-token pass over a one-token pass
    caches: list[KVCache] = field(default_factory=list)  # full-model prompt KV per sequence
    # Full-model hidden states entering each layer, over each generated block: a trial
    # whose first skipped sub-layer is in layer j starts there instead of at layer 0.
    hidden: list[list[Tensor]] = field(default_factory=list)  # [seq][layer] -> [1, T, C]
    vanilla_tps: float | None = None


def weight_share(lm: LoadedModel, skip: SkipSet) -> float:
    """The draft's share of the weights a forward pass reads (LM head included)."""
    cfg = lm.engine.cfg
    d, hd = cfg.dim, cfg.head_dim
    attn = d * hd * (2 * cfg.n_heads + 2 * cfg.n_kv_heads)
    mlp = 3 * d * cfg.intermediate_size
    total = cfg.n_layers * (attn + mlp) + cfg.vocab_size * d
    return 1.0 - (len(skip.attn) * attn + len(skip.mlp) * mlp) / total


def calibrate(lm: LoadedModel, settings: SearchSettings) -> Calibration:
    """Full-model greedy text on calibration prompts, and the full model's prompt KV.

    As in real drafting, the draft then reads the full model's keys and values for the
    prompt; only the generated positions go through the skipped model in each trial.
    """
    prompts = [p.prompt for p in load_prompts()[:: max(1, 30 // settings.prompts)]]
    prompts = prompts[: settings.prompts]
    cfg = SamplingConfig(max_new_tokens=settings.tokens)
    sequences, starts, caches, hidden = [], [], [], []
    for p in prompts:
        result = run_to_end(generate(lm, p, vanilla, cfg))
        ids = lm.encode(p)
        seq = ids + result.tokens
        cache = lm.engine.new_cache(len(seq))
        eng = lm.engine
        with torch.inference_mode():
            eng.forward(torch.tensor([ids[:-1]], device=eng.device), cache, 0)
            h = eng.embed(torch.tensor([seq[len(ids) - 1 : -1]], device=eng.device))
            states = [h]
            for i in range(eng.cfg.n_layers):
                h = eng.run_layers(h, cache, len(ids) - 1, i, i + 1)
                states.append(h)
        sequences.append(seq)
        starts.append(len(ids))
        caches.append(cache)
        hidden.append(states)
    cost = settings.verify_cost or _verify_cost(lm, settings.gamma + 1)
    return Calibration(sequences, starts, prompts, cost, caches, hidden)


def _verify_cost(lm: LoadedModel, k: int, repeats: int = 5) -> float:
    eng = lm.engine
    cache = eng.new_cache(64)

    def timed(t: int) -> float:
        x = torch.zeros(1, t, dtype=torch.long, device=eng.device)
        best = float("inf")
        with eng.decoding():
            for _ in range(repeats):
                t0 = time.perf_counter()
                eng.forward(x, cache, 8)
                best = min(best, time.perf_counter() - t0)
        return best

    timed(1)
    return timed(k) / timed(1)


def matchness(lm: LoadedModel, cal: Calibration, skip: SkipSet) -> float:
    """Share of generated positions where the skipped model's argmax is the full model's."""
    eng = lm.engine
    first = min(skip.attn | skip.mlp, default=eng.cfg.n_layers)
    hits = total = 0
    with torch.inference_mode():
        for seq, start, cache, states in zip(
            cal.sequences, cal.starts, cal.caches, cal.hidden, strict=True
        ):
            # The block seq[start-1:-1] predicts seq[start:]; layers before `first` are
            # the full model's own, so start from its cached hidden states there.
            h = eng.run_layers(states[first], cache, start - 1, first, None, skip)
            pred = eng.logits(h)[0].argmax(-1)
            target = torch.tensor(seq[start:], device=pred.device)
            hits += int((pred == target).sum())
            total += len(target)
    return hits / total


def proxy_speedup(a: float, share: float, gamma: int, verify_cost: float) -> float:
    """Estimated speed-up of drafting gamma tokens at acceptance a and weight share c."""
    a = min(a, 0.999999)
    tokens_per_step = (1 - a ** (gamma + 1)) / (1 - a)
    return tokens_per_step / (gamma * share + verify_cost)


def measured_speedup(lm: LoadedModel, cal: Calibration, skip: SkipSet) -> float:
    cfg = SamplingConfig(
        max_new_tokens=max(len(s) - st for s, st in zip(cal.sequences, cal.starts, strict=True))
    )

    def tps(method) -> float:
        runs = [run_to_end(generate(lm, p, method, cfg)) for p in cal.prompts]
        return sum(len(r.tokens) for r in runs) / sum(r.seconds for r in runs)

    if cal.vanilla_tps is None:
        cal.vanilla_tps = tps(vanilla)
    n = lm.engine.cfg.n_layers
    method = _skip_method(skip, n)
    return tps(method) / cal.vanilla_tps


def _skip_method(skip: SkipSet, n_layers: int):
    from functools import partial

    return partial(
        speculative,
        drafter=lambda lm: SkipLayerDrafter(skip, n_layers, threshold=AdaptiveThreshold()),
    )


def run_search(
    lm: LoadedModel,
    settings: SearchSettings,
    storage: str | Path | None = None,
    out: Path | None = None,
    progress: Callable[[SearchProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SkipProfile:
    """Run (or resume) the search and save the best skip set as the model's profile.

    `progress` hears every finished trial; `should_stop` is asked after each one."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n = lm.engine.cfg.n_layers
    if n < 3:
        raise BadInputError("The layer search needs a model with at least 3 layers.")
    out = out or profile_path(lm)
    storage = Path(storage) if storage else out.with_suffix(".optuna.db")
    storage.parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=f"{model_key(lm)}-{settings.objective}",
        storage=f"sqlite:///{storage}",
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=settings.seed),
        load_if_exists=True,
    )
    cal = calibrate(lm, settings)
    baseline = 1.0  # plain decoding, by definition of both objectives

    def objective(trial) -> float:
        attn = [i for i in range(1, n - 1) if trial.suggest_int(f"attn_{i}", 0, 1)]
        mlp = [i for i in range(1, n - 1) if trial.suggest_int(f"mlp_{i}", 0, 1)]
        skip = SkipSet.of(attn, mlp)
        if skip.size == 0:
            return baseline
        if settings.objective == "speed":
            return measured_speedup(lm, cal, skip)
        a = matchness(lm, cal, skip)
        trial.set_user_attr("matchness", a)
        return proxy_speedup(a, weight_share(lm, skip), settings.gamma, cal.verify_cost)

    def report(study, trial) -> None:
        if progress:
            best = study.best_trial
            progress(
                SearchProgress(
                    trial.number + 1, settings.trials, trial.value, best.value, best.number + 1
                )
            )
        if should_stop and should_stop():
            study.stop()

    if not study.trials:
        # Start from the sparse end of the space: random 50% skip sets wreck any model,
        # and single sub-layers (attention first, the cheapest to drop) tell TPE which
        # parts of this model are redundant.
        for i in [*range(1, n - 1)][: settings.trials]:
            params = {f"attn_{j}": int(j == i) for j in range(1, n - 1)}
            study.enqueue_trial(params | {f"mlp_{j}": 0 for j in range(1, n - 1)})
    done = len([t for t in study.trials if t.state.is_finished()])
    remaining = max(0, settings.trials - done)
    if remaining:
        study.optimize(objective, n_trials=remaining, callbacks=[report])
    best = study.best_trial
    attn = [i for i in range(1, n - 1) if best.params.get(f"attn_{i}")]
    mlp = [i for i in range(1, n - 1) if best.params.get(f"mlp_{i}")]
    beats = best.value > baseline
    note = (
        f"best skip set scores {best.value:.3f} against plain decoding's {baseline:.3f}"
        if beats
        else "no skip set beats plain decoding on this model: the best found scores "
        f"{best.value:.3f} against {baseline:.3f}"
    )
    profile = SkipProfile(
        model=model_key(lm),
        n_layers=n,
        attn=attn,
        mlp=mlp,
        objective=settings.objective,
        trials=len(study.trials),
        score=round(best.value, 4),
        baseline=baseline,
        beats_plain=beats,
        note=note,
    )
    save_profile(profile, out)
    return profile
