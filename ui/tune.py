"""Tune tab: which speculative profiles and adapters exist. The layer search and adapter
training UIs come with the library functions for them; until then this tab says so
instead of offering buttons that do nothing."""

import gradio as gr

import selfspec
from ui.context import AppContext

__all__ = ["build", "tuning_status"]

# Names the decoding library may expose for saved skip profiles and Kangaroo adapters.
_LISTERS = ("list_profiles", "list_adapters")


def tuning_status() -> str:
    """Markdown listing what ``selfspec`` exposes for tuning, honestly empty if nothing."""
    lines = []
    for name in _LISTERS:
        lister = getattr(selfspec, name, None)
        label = name.removeprefix("list_")
        if lister is None:
            lines.append(f"- **{label}**: not available yet in this version.")
            continue
        items = list(lister())
        shown = ", ".join(f"`{item}`" for item in items) or "none saved yet"
        lines.append(f"- **{label}**: {shown}")
    return "\n".join(lines)


def build(ctx: AppContext) -> None:
    gr.Markdown(
        "Tuning finds the layers to skip (Bayesian search) and trains the Kangaroo adapter. "
        "Running them from this page is **not available yet**; the list below shows what "
        "the decoding library offers now."
    )
    status = gr.Markdown(tuning_status(), elem_id="tune-status")
    refresh = gr.Button("Refresh", size="sm")
    refresh.click(tuning_status, None, status, api_name="tune_status")
