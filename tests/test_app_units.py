"""The app's own rules, without a server: model choice, who the user is, input checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from selfspec.errors import ModelLoadError
from ui.config import AppConfig, ConfigError
from ui.models import ModelPool
from ui.notes import check_upload, split_tags
from ui.playground import MAX_PROMPT_CHARS, check_prompt
from ui.review import card_of_key, parse_rating
from ui.stats import calibration, due_forecast, heatmap_html
from ui.users import LOCAL_USER, TEST_USER_HEADER, SignInRequired, user_name


def request(headers: dict[str, str] | None = None, username: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(headers=headers or {}, username=username)


def test_config_reads_the_default_model_and_hosting_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SELFSPEC_MODEL", "tiny-llama")
    monkeypatch.setenv("SELFSPEC_HOSTED", "1")
    monkeypatch.setenv("SELFSPEC_ALLOWED_MODELS", "a/b, c/d")
    monkeypatch.delenv("SPACE_ID", raising=False)
    config = AppConfig.from_env()
    assert config.default_model == "tiny-llama" and config.hosted and not config.on_spaces
    assert config.allowed_models == ("a/b", "c/d")
    monkeypatch.setenv("SPACE_ID", "someone/selfspec")
    assert AppConfig.from_env().on_spaces


def test_hosted_pool_refuses_ids_off_the_allow_list_and_falls_back() -> None:
    pool = ModelPool(
        AppConfig(default_model="tiny-llama", hosted=True, allowed_models=("a/b",), dtype="float32")
    )
    choice = pool.get("evil/model")
    assert choice.model.source == "tiny-llama"
    assert "not on this server's list" in choice.notice
    assert pool.get("tiny-qwen2").notice  # even a tiny model is refused when not allowed


def test_local_pool_explains_unknown_names_and_offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pool = ModelPool(AppConfig(default_model="tiny-llama", dtype="float32"))
    assert "not a known model name" in pool.get("gpt5").notice
    assert "hub is not reachable" in pool.get("meta-llama/Llama-3-8B").notice
    assert pool.get("").notice is None and pool.default_loaded


def test_local_pool_offers_the_installed_model_packages_with_their_licence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ui.models

    monkeypatch.setattr(ui.models, "installed_models", lambda: ["gemma3-270m"])
    pool = ModelPool(AppConfig(default_model="tiny-llama", dtype="float32"))
    labels = dict((value, label) for label, value in pool.choices())
    assert list(labels) == ["tiny-llama", "bundled", "gemma3-270m"]
    assert "Gemma Terms of Use" in labels["gemma3-270m"]
    real_load = ui.models.load_model

    def load(source, *args):
        if source == "qwen2.5-coder-1.5b":  # as on a machine without `make models`
            raise ModelLoadError("Qwen2.5-Coder-1.5B is not installed: run `make models`.")
        return real_load(source, *args)

    monkeypatch.setattr(ui.models, "load_model", load)
    notice = pool.get("qwen2.5-coder-1.5b").notice  # a known name: not refused, tried
    assert "make models" in notice and "Using tiny-llama" in notice


def test_the_quiz_writer_comes_from_the_pool_with_its_method(tmp_path: Path) -> None:
    from db import init_db
    from ui.context import AppContext

    config = AppConfig(default_model="tiny-llama", hosted=True, allowed_models=(), dtype="float32")
    ctx = AppContext(config, init_db(f"sqlite:///{tmp_path / 'app.db'}"), ModelPool(config))
    writer, writes = ctx.quiz_writer(None)  # auto: the operator's model
    assert (writer.model, writer.method, writer.notice) == ("tiny-llama", "pld", None)
    done = writes("Tides: ", temperature=0.0)
    assert (done.model, done.method) == ("tiny-llama", "pld") and done.tokens_per_s > 0
    assert ctx.quiz_writer(None)[1].lm is ctx.models.default()  # one model per name
    refused, _ = ctx.quiz_writer("bundled")  # not on this server's list: the default writes
    assert refused.model == "tiny-llama" and "not on this server's list" in refused.notice
    ctx.db.dispose()


def test_user_is_local_without_login_and_the_profile_name_on_spaces() -> None:
    local = AppConfig()
    assert user_name(local, request(), None) == LOCAL_USER
    assert user_name(local, request(username="pw-user"), None) == "pw-user"
    # The test header is ignored unless the server was started to honour it.
    assert user_name(local, request({TEST_USER_HEADER: "mallory"}), None) == LOCAL_USER
    spaces = AppConfig(on_spaces=True, hosted=True)
    assert user_name(spaces, request(), SimpleNamespace(username="alice")) == "alice"
    with pytest.raises(SignInRequired):
        user_name(spaces, request(), None)
    assert (
        user_name(AppConfig(test_user_header=True), request({TEST_USER_HEADER: "bob"}), None)
        == "bob"
    )


def test_the_test_user_header_is_refused_where_the_app_is_hosted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SELFSPEC_TEST_USER_HEADER", "1")
    monkeypatch.delenv("SELFSPEC_HOSTED", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert AppConfig.from_env().test_user_header  # local tests may use it
    for variable in ("SPACE_ID", "SELFSPEC_HOSTED"):
        with monkeypatch.context() as env:
            env.setenv(variable, "1")
            with pytest.raises(ConfigError, match="SELFSPEC_TEST_USER_HEADER"):
                AppConfig.from_env()
    with pytest.raises(ConfigError, match="anyone pick any user"):
        AppConfig(test_user_header=True, on_spaces=True)


def test_jobs_run_inline_by_default_and_a_bad_mode_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SELFSPEC_JOBS", raising=False)
    assert AppConfig.from_env().jobs == "inline"
    monkeypatch.setenv("SELFSPEC_JOBS", "OFF")
    assert AppConfig.from_env().jobs == "off"
    monkeypatch.setenv("SELFSPEC_JOBS", "sometimes")
    with pytest.raises(ConfigError, match="SELFSPEC_JOBS='sometimes'"):
        AppConfig.from_env()


def test_prompt_checks() -> None:
    assert "empty" in check_prompt("  \n")
    assert "at most" in check_prompt("x" * (MAX_PROMPT_CHARS + 1))
    assert check_prompt("Hello") is None


def test_upload_checks(tmp_path: Path) -> None:
    assert "Choose" in check_upload(None)
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(b"%PDF")
    assert "not a Markdown file" in check_upload(str(pdf))
    big = tmp_path / "big.md"
    with big.open("wb") as f:
        f.truncate(21 * 1024 * 1024)
    assert "20 MB" in check_upload(str(big))
    ok = tmp_path / "ok.MD"
    ok.write_text("# Title\n")
    assert check_upload(str(ok)) is None
    assert split_tags(" a, ,b ,") == ["a", "b"]


def test_rating_labels_and_keys() -> None:
    assert parse_rating("3 · Good") == 3 and parse_rating(4) == 4 and parse_rating("Good") == 0
    assert card_of_key("abc:17") == 17 and card_of_key("") is None and card_of_key("abc:x") is None


def test_due_forecast_counts_overdue_today_and_ignores_new_cards() -> None:
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    dues = [
        now - timedelta(days=3),
        now + timedelta(hours=1),
        now + timedelta(days=2),
        None,
        now + timedelta(days=40),
    ]
    frame = due_forecast(dues, now)
    assert len(frame) == 30
    assert frame["cards due"].tolist()[:3] == [2, 0, 1] and frame["cards due"].sum() == 3


def test_calibration_bins_observed_recall_and_keeps_the_ideal_line() -> None:
    frame = pd.DataFrame({"predicted": [0.95, 0.92, 0.15, None], "rating": [3, 1, 1, 3]})
    result = calibration(frame)
    observed = result[result["series"] == "observed"].set_index("predicted")["recall"]
    assert observed.loc[0.935] == 0.5 and observed.loc[0.15] == 0.0
    assert len(calibration(frame.iloc[3:])) == 2  # only the ideal line


def test_heatmap_counts_reviews() -> None:
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    page = heatmap_html([now, now, now - timedelta(days=1)], now)
    assert "3 review(s)" in page and "2026-11-28: 2 review(s)" in page


def test_password_protects_the_ui_but_not_the_health_check(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from ui.app import build_context, create_app

    ctx = build_context(
        AppConfig(default_model="tiny-llama", password="s3cret"),
        db_url=f"sqlite:///{tmp_path / 'a.db'}",
    )
    web = TestClient(create_app(ctx))
    health = web.get("/healthz").json()  # the model may still be loading in the background
    assert health["db_ok"] is True and health["model_error"] is None
    assert web.get("/config").status_code == 401
    assert web.post("/login", data={"username": "user", "password": "s3cret"}).status_code == 200


def _route_paths(node, depth: int = 0) -> set[str]:
    """Every route path under an app, through mounts and included routers."""
    paths = {p} if isinstance(p := getattr(node, "path", None), str) else set()
    children = list(getattr(node, "routes", None) or [])
    if (sub := getattr(node, "app", None)) is not None and depth < 6:
        children.append(sub)
    for child in children:
        if depth < 6:
            paths |= _route_paths(child, depth + 1)
    return paths


def test_spaces_mode_needs_the_oauth_extra_or_serves_the_login_routes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from ui.app import build_context, create_app

    ctx = build_context(
        AppConfig(default_model="tiny-llama", on_spaces=True, hosted=True),
        db_url=f"sqlite:///{tmp_path / 'b.db'}",
    )
    if (
        importlib.util.find_spec("authlib") is None
        or importlib.util.find_spec("itsdangerous") is None
    ):
        with pytest.raises(RuntimeError, match=r"gradio\[oauth\]"):
            create_app(ctx)
    else:
        import gradio.oauth

        # What a Space with `hf_oauth: true` provides; outside a Space Gradio would mock
        # the login with the local Hugging Face token instead.
        monkeypatch.setattr(gradio.oauth, "get_space", lambda: "someone/selfspec-lab")
        for name, value in {
            "OAUTH_CLIENT_ID": "client",
            "OAUTH_CLIENT_SECRET": "secret",
            "OAUTH_SCOPES": "openid profile",
            "OPENID_PROVIDER_URL": "https://huggingface.co",
        }.items():
            monkeypatch.setattr(gradio.oauth, name, value)
        assert "/login/huggingface" in _route_paths(create_app(ctx))


def test_streamed_batches_carry_every_event_and_raise_the_generation_error() -> None:
    from ui.streaming import events_job, stream_batches

    def events(fail: bool):  # noqa: ANN202 - a small generator
        yield from range(5)
        if fail:
            raise ValueError("model failed")

    batches = stream_batches(events_job(events(False)), 0.01)
    assert [e for batch in batches for e in batch] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="model failed"):
        for _ in stream_batches(events_job(events(True)), 0.01):
            pass


def test_a_jobs_result_comes_last_and_a_set_stop_event_ends_it() -> None:
    import threading

    from ui.streaming import stream_batches

    stop = threading.Event()

    def job(emit, should_stop) -> str:  # noqa: ANN001 - the library callback shapes
        emit("trial 1")
        stop.set()  # as the page's Stop would
        while not should_stop():
            pass
        return "result"

    assert [e for batch in stream_batches(job, 0.01, stop) for e in batch] == [
        "trial 1",
        "result",
    ]


def test_the_port_comes_from_selfspec_port_gradio_server_port_or_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("SELFSPEC_PORT", "GRADIO_SERVER_PORT", "PORT"):
        monkeypatch.delenv(name, raising=False)
    assert AppConfig.from_env().port == 7860
    monkeypatch.setenv("PORT", "8080")
    assert AppConfig.from_env().port == 8080
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    assert AppConfig.from_env().port == 7999
    monkeypatch.setenv("SELFSPEC_PORT", "7001")
    assert AppConfig.from_env().port == 7001
    monkeypatch.setenv("SELFSPEC_PORT", "http")
    with pytest.raises(ConfigError, match="SELFSPEC_PORT"):
        AppConfig.from_env()


def test_the_lossless_verdict_states_the_rule_and_the_margin() -> None:
    from selfspec.compare import Margin, Rule, Verdict
    from ui.playground_rows import verdict_text

    peer, ours = Rule(1e-3), Rule()
    tie = Verdict(1.2, peer, exact=False, lossless=True, first_difference=9, worst=Margin(9, 4e-4))
    assert verdict_text(tie) == (
        "yes within tolerance 0.001: differs at token 9, worst margin 0.0004 at token 9"
    )
    wrong = Verdict(
        1.1, ours, exact=False, lossless=False, first_difference=3, worst=Margin(5, 0.8)
    )
    assert verdict_text(wrong) == "no (exact): differs at token 3, worst margin 0.8 at token 5"
    same = Verdict(1.3, ours, exact=True, lossless=True)
    assert verdict_text(same) == "yes: identical (exact)"
    assert verdict_text(Verdict(0.9, None)) == "n/a (sampling)"
    assert verdict_text(None) == "reference"


def test_metrics_use_the_median_of_repeated_runs() -> None:
    from selfspec import GenerationResult
    from selfspec.compare import Rule, Verdict
    from ui.playground_rows import metrics_rows

    def run(method: str, seconds: float) -> GenerationResult:
        return GenerationResult(method, "m", "x", [1] * 10, 3, seconds, "length")

    results = {"vanilla": run("vanilla", 1.0), "pld": run("pld", 0.5)}
    verdicts = {"vanilla": None, "pld": Verdict(2.0, Rule(), exact=True, lossless=True)}
    frame = metrics_rows(results, verdicts, {"vanilla": [10.0, 12.0, 30.0], "pld": [20.0]})
    rows = frame.set_index("method")
    assert (
        rows.loc["vanilla", "tokens/s"] == 12.0
        and "10.0-30.0 over 3 runs" in rows.loc["vanilla", "spread"]
    )
    assert (
        rows.loc["pld", "speed-up"] == round(20 / 12, 2) and rows.loc["pld", "spread"] == "one run"
    )


def test_the_playground_offers_only_the_methods_that_apply_to_the_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ui.playground import method_choices

    monkeypatch.setenv("SELFSPEC_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SELFSPEC_DRAFT_MODEL", raising=False)
    names = [name for _, name in method_choices("bundled")[0]]
    assert {"vanilla", "skip", "pld", "kangaroo"} <= set(names) and "draft-model" not in names
    choices, missing = method_choices("tiny-llama")
    assert "skip" not in [name for _, name in choices]
    assert "skip (no skip profile" in missing and "draft-model (" in missing
