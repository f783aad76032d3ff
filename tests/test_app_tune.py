"""The Tune tab: layer search from the page (streamed through gradio_client), cancel, the
hosted refusal, and choosing the active profile."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client

from selfspec.adapter_corpus import Sequence
from selfspec.loading import load_model
from selfspec.search import SearchProgress, SearchSettings, run_search
from selfspec.train_adapter import TrainSettings, train_adapter
from tests.app_helpers import Served, plot_rows, serve_app
from ui.config import AppConfig
from ui.streaming import stream_batches
from ui.tune_files import SHIPPED_CHOICE, make_active
from ui.tune_jobs import ALLOW_ENV, heavy_refusal, training_rows, trial_rows


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Profiles go under SELFSPEC_DATA_DIR, read when a search saves: point it at a temp dir."""
    path = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SELFSPEC_DATA_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[Served]:
    with serve_app(tmp_path_factory.mktemp("app")) as served:
        yield served


def test_search_streams_every_trial_and_saves_the_profile(served: Served, data_dir: Path) -> None:
    job = Client(served.url, verbose=False).submit(3, "proxy", 1, 8, api_name="/tune_search")
    statuses = [status for status, _plot in job]
    final_status, plot = job.result()
    assert any(s.startswith("trial 3:") for s in statuses + [final_status])
    # The first search has nothing to beat: its new file becomes the active profile.
    assert "Saved `tiny-llama." in final_status and "now active" in final_status
    assert (data_dir / "profiles" / "tiny-llama.skip.json").is_file()
    assert sorted({trial for trial, _value, _series in plot_rows(plot)}) == [1, 2, 3]
    assert len(statuses) >= 2 and statuses[0].startswith("Calibrating")


def test_should_stop_ends_the_search_early(tmp_path: Path) -> None:
    lm = load_model("tiny-llama", dtype="float32")
    lines: list[SearchProgress] = []
    profile = run_search(
        lm,
        SearchSettings(trials=6, prompts=1, tokens=8),
        out=tmp_path / "p.skip.json",
        progress=lines.append,
        should_stop=lambda: len(lines) >= 2,
    )
    assert len(lines) == 2 and profile.trials == 2


def test_closing_the_job_stream_sets_cancel() -> None:
    cancel = threading.Event()
    started = threading.Event()

    def job(progress, should_stop) -> int:  # noqa: ANN001 - the library callback shapes
        progress(SearchProgress(1, 6, 0.5, 0.5, 1))
        started.set()
        while not should_stop():
            started.wait(0.01)
        return 1

    events = stream_batches(job, 0.01, cancel)
    while not (batch := next(events)):
        pass
    assert batch[0].trial == 1
    events.close()
    assert cancel.is_set()


def test_trial_rows_give_score_and_best_per_trial() -> None:
    frame = trial_rows([SearchProgress(1, 2, 0.4, 0.4, 1), SearchProgress(2, 2, 0.3, 0.4, 1)])
    assert frame.to_dict("records") == [
        {"trial": 1, "value": 0.4, "series": "score"},
        {"trial": 1, "value": 0.4, "series": "best so far"},
        {"trial": 2, "value": 0.3, "series": "score"},
        {"trial": 2, "value": 0.4, "series": "best so far"},
    ]


def test_hosted_servers_refuse_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    class Ctx:
        config = AppConfig(hosted=True)

    monkeypatch.delenv(ALLOW_ENV, raising=False)
    assert "turned off" in heavy_refusal(Ctx())
    monkeypatch.setenv(ALLOW_ENV, "1")
    assert heavy_refusal(Ctx()) is None


def test_make_active_copies_a_profile_for_this_model(served: Served, data_dir: Path) -> None:
    folder = data_dir / "profiles"
    folder.mkdir(exist_ok=True)
    other = folder / "other.skip.json"
    if not (folder / "tiny-llama.skip.json").is_file():
        pytest.skip("needs the profile the search test saves")
    other.write_bytes((folder / "tiny-llama.skip.json").read_bytes())
    before = set(folder.glob("tiny-llama.*.replaced.skip.json"))
    assert "Copied" in make_active(served.ctx, "other.skip.json")
    assert len(set(folder.glob("tiny-llama.*.replaced.skip.json")) - before) == 1
    (folder / "bad.skip.json").write_text('{"model": "x"}')
    assert "malformed" in make_active(served.ctx, "bad.skip.json")
    # tiny-llama ships no profile: restoring "the shipped one" says so and changes nothing.
    assert "No profile ships" in make_active(served.ctx, SHIPPED_CHOICE)
    assert (folder / "tiny-llama.skip.json").is_file()


def test_should_stop_ends_adapter_training_early_and_saves_it(tmp_path: Path) -> None:
    lm = load_model("tiny-llama", dtype="float32")
    seqs = [Sequence(list(range(3 + i, 19 + i)), 4) for i in range(8)]
    asked: list[int] = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 3

    settings = TrainSettings(exit_layer=2, steps=50, batch=2, warmup=1, eval_every=50)
    out = tmp_path / "a.safetensors"
    adapter = train_adapter(lm, settings, out, progress=False, sequences=seqs, should_stop=stop)
    assert adapter.settings.steps == 3 and len(asked) == 4
    assert out.is_file() and (tmp_path / "a.ckpt.pt").is_file()


def test_training_reports_every_step_for_the_curves(tmp_path: Path) -> None:
    lm = load_model("tiny-llama", dtype="float32")
    seqs = [Sequence(list(range(3 + i, 19 + i)), 4) for i in range(8)]
    reports: list = []
    settings = TrainSettings(exit_layer=2, steps=6, batch=2, warmup=1, eval_every=3)
    train_adapter(
        lm,
        settings,
        tmp_path / "a.safetensors",
        progress=False,
        sequences=seqs,
        report=reports.append,
    )
    assert [r.step for r in reports] == [1, 2, 3, 4, 5, 6]
    assert len({r.held_out_loss for r in reports}) >= 2  # re-evaluated at steps 3 and 6
    loss, acceptance = training_rows(reports, "loss"), training_rows(reports, "acceptance")
    assert set(loss["series"]) == {"training loss", "held-out loss"} and len(loss) == 12
    assert list(acceptance["value"]) == [r.expected_acceptance for r in reports]


def test_training_from_the_page_streams_its_curves(served: Served, data_dir: Path) -> None:
    job = Client(served.url, verbose=False).submit(2, 4, "ce", api_name="/tune_train")
    final_status, loss_plot, acceptance_plot = job.result()
    assert "Saved" in final_status and "after 4 steps" in final_status
    assert "now active" in final_status  # nothing to beat: no user or shipped adapter
    assert sorted({step for step, _v, _s in plot_rows(loss_plot)}) == [1, 2, 3, 4]
    assert len(plot_rows(acceptance_plot)) == 4
