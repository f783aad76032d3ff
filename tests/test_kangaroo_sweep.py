"""The Kangaroo measurements (scripts/kangaroo_sweep.py): the eta table counts what the
drafter would do, and it refuses text the adapter was trained on."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from selfspec.adapter import save_adapter
from selfspec.adapter_corpus import Sequence, add_states
from selfspec.decoding import vanilla
from selfspec.drafters.kangaroo import KangarooDrafter
from selfspec.profiles import model_key
from selfspec.sampling import SamplingConfig
from selfspec.train_adapter import BUILTIN_DATA
from tests.model_helpers import random_ids, tiny
from tests.script_helpers import load_script
from tests.test_kangaroo import draft_once, make_adapter, tokens_of

sweep = load_script("kangaroo_sweep")


def test_eta_table_counts_the_drafts_at_least_that_sure():
    conf = torch.tensor([0.1, 0.3, 0.45, 0.55, 0.65, 0.95])
    same = torch.tensor([False, True, False, True, True, True])
    rows = {row["eta"]: row for row in sweep.eta_table(same, conf)}
    assert rows[0.0] == {"eta": 0.0, "coverage": 1.0, "agreement": round(4 / 6, 4)}
    assert rows[0.4] == {"eta": 0.4, "coverage": round(4 / 6, 4), "agreement": 0.75}
    assert rows[0.5] == {"eta": 0.5, "coverage": 0.5, "agreement": 1.0}
    assert rows[0.9] == {"eta": 0.9, "coverage": round(1 / 6, 4), "agreement": 1.0}


def test_teacher_forced_agreement_is_the_drafter_s_own_first_draft():
    """At each generated position the script's draft token is the one the drafter proposes
    first from there, so its agreement is the drafter's first-token acceptance."""
    lm = tiny("tiny-llama")
    adapter = make_adapter(lm, 2, "random", seed=5)
    cfg = SamplingConfig(max_new_tokens=12)
    prompt = random_ids(10, seed=2)
    out = tokens_of(lm, lm.decode(prompt), vanilla, cfg)
    prompt = lm.encode(lm.decode(prompt))
    seq = Sequence(prompt + out, len(prompt))
    add_states(lm, [seq], 2)
    same, conf = sweep.draft_vs_target(adapter, lm, [seq])
    assert len(same) == len(out)
    assert 0 < int(same.sum()) < len(out)  # a random adapter: some agree, some do not
    for t in range(len(out)):
        drafter = KangarooDrafter(adapter, 2, eta=0.5, max_draft=1)
        with torch.inference_mode():
            _, draft = draft_once(lm, drafter, seq.ids[: len(prompt) + t], cfg)
        assert (draft.tokens[0] == out[t]) == bool(same[t]), t


def test_eta_on_benchmark_refuses_an_adapter_that_saw_the_benchmark(tmp_path, monkeypatch):
    lm = tiny("tiny-llama")
    adapter = make_adapter(lm, 2)
    adapter.settings = replace(adapter.settings, data=f"continuations of the {BUILTIN_DATA}")
    save_adapter(adapter, tmp_path / "adapters" / f"{model_key(lm)}.kangaroo.safetensors")
    monkeypatch.setenv("SELFSPEC_DATA_DIR", str(tmp_path))
    with pytest.raises(SystemExit, match="saw the benchmark prompts"):
        sweep.eta_on_benchmark(lm, tmp_path, tmp_path / "eta.json")
    assert not (tmp_path / "eta.json").exists()
