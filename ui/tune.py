"""Tune tab: the skip profile the `skip` method uses for the loaded model, and honest
placeholders for what the UI cannot run yet (layer search, adapter training). The
library has the search as a CLI (`python -m selfspec search`); running it from the page,
with live progress and cancel, comes later."""

import gradio as gr

from selfspec import SelfSpecError
from ui.context import AppContext

__all__ = ["build", "profile_status"]


def profile_status(ctx: AppContext) -> str:
    """Markdown: the active skip profile of the default model, or why there is none."""
    try:
        from selfspec.profiles import load_profile
    except ImportError:
        return "- **skip profiles**: not available yet in this version of `selfspec`."
    lm = ctx.models.default()
    try:
        profile = load_profile(lm)
    except SelfSpecError as exc:
        return f"- **skip profile for {lm.name}**: none. {exc}"
    verdict = {
        True: "beats plain decoding",
        False: "does not beat plain decoding",
        None: "not measured",
    }
    return (
        f"- **skip profile for {lm.name}**: attention sub-layers skipped {profile.attn or 'none'}, "
        f"MLP sub-layers skipped {profile.mlp or 'none'} of {profile.n_layers} layers; found by "
        f"{profile.objective} ({profile.trials} trials), {verdict[profile.beats_plain]}."
        + (f" {profile.note}" if profile.note else "")
    )


def build(ctx: AppContext) -> None:
    gr.Markdown(
        "Tuning finds the sub-layers to skip (Bayesian search) and trains the Kangaroo adapter.\n\n"
        "- **Layer search from this page**: not available yet. Run `python -m selfspec search "
        "--model bundled` in a terminal; the profile it saves is used by the `skip` method.\n"
        "- **Kangaroo adapter training**: not available yet.\n\n"
        "Press the button to see the active skip profile (this loads the model if needed)."
    )
    status = gr.Markdown(elem_id="tune-status")
    refresh = gr.Button("Show the active profile", size="sm", elem_id="tune-refresh")
    refresh.click(lambda: profile_status(ctx), None, status, api_name="tune_status")
