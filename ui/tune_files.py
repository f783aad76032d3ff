"""The Tune tab's lists of skip profiles and Kangaroo adapters, and its words for
switching them. The file operations themselves (checking a file is for this model,
copying it, keeping the one it replaces) are the library's: ``selfspec.profiles`` and
``selfspec.adapter_files``.
"""

from __future__ import annotations

from pathlib import Path

from selfspec import LoadedModel, SelfSpecError
from selfspec.adapter_files import (
    acceptance,
    adapter_files,
    install_adapter_if_better,
    restore_shipped_adapter,
    use_adapter,
)
from selfspec.drafters.kangaroo import adapter_path
from selfspec.profiles import (
    SkipProfile,
    install_if_better,
    load_profile,
    profile_files,
    profile_path,
    restore_shipped_profile,
    use_profile,
)
from ui.context import AppContext

__all__ = [
    "SHIPPED_CHOICE",
    "adapter_choices",
    "install_adapter_words",
    "install_profile_words",
    "make_active",
    "make_adapter_active",
    "profile_choices",
    "profile_status",
]

SHIPPED_CHOICE = "shipped"  # the list entry that restores the package's own file


def profile_status(ctx: AppContext) -> str:
    """Markdown: the active skip profile of the default model, or why there is none."""
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


def _profile_label(path: Path, lm: LoadedModel) -> str:
    try:
        profile = load_profile(lm, path)
    except SelfSpecError:
        return f"{path.name} (not for this model)"
    score = "not scored" if profile.score is None else f"score {profile.score:.3f}"
    return f"{path.name}: {score} ({profile.objective}, {profile.trials} trials)"


def profile_choices(ctx: AppContext) -> list[tuple[str, str]]:
    """The profiles a user can make active, each labelled with its score: the shipped one
    (always listed where the package has one) and every file in the profiles folder."""
    lm = ctx.models.default()
    choices = []
    shipped = profile_path(lm, user=False)
    if shipped.is_file():
        choices.append((f"shipped: {_profile_label(shipped, lm)}", SHIPPED_CHOICE))
    active = profile_path(lm).name
    for path in profile_files():
        mark = " [active]" if path.name == active else ""
        choices.append((_profile_label(path, lm) + mark, path.name))
    return choices


def make_active(ctx: AppContext, name: str | None) -> str:
    """Make a listed profile the one `skip` uses (the shipped one: remove the user's); the
    profile it replaces stays listed under a versioned name, so the switch can be undone."""
    if not name:
        return "Pick a profile first."
    lm = ctx.models.default()
    try:
        if name == SHIPPED_CHOICE:
            kept = restore_shipped_profile(lm).kept
            yours = f"; yours is kept as `{kept.name}`" if kept else ""
            return f"The shipped profile is active again{yours}.\n\n{profile_status(ctx)}"
        if not use_profile(lm, name).changed:
            return f"`{name}` is already the active profile.\n\n{profile_status(ctx)}"
    except SelfSpecError as exc:
        return str(exc)
    return f"Copied `{name}` to `{profile_path(lm)}`.\n\n{profile_status(ctx)}"


def _score(profile: SkipProfile | None) -> str:
    return "none" if profile is None or profile.score is None else f"{profile.score:.3f}"


def install_profile_words(ctx: AppContext, candidate: Path) -> str:
    """Install a searched profile if it scores better (`install_if_better`); say what
    happened."""
    done = install_if_better(ctx.models.default(), candidate)
    new, old = done.new, done.old
    if done.installed:
        return f"It is now active (score {_score(new)} against {_score(old)} for the one before)."
    why = (
        f"score {_score(new)} is not above the active profile's {_score(old)}"
        if done.comparable
        else f"its objective ({new.objective}) differs from the active profile's "
        f"({old.objective}), so the scores do not compare"
    )
    return f"The active profile stays ({why}); choose it under *Profiles* to use it anyway."


def _adapter_label(path: Path, lm: LoadedModel) -> str:
    value = acceptance(lm, path)
    if value is None:
        return f"{path.name} (not for this model)"
    return f"{path.name}: expected acceptance {value:.3f}"


def adapter_choices(ctx: AppContext) -> list[tuple[str, str]]:
    """The adapters a user can make active: the shipped one and every file in the folder."""
    lm = ctx.models.default()
    choices = []
    shipped = adapter_path(lm, user=False)
    if shipped.is_file():
        choices.append((f"shipped: {_adapter_label(shipped, lm)}", SHIPPED_CHOICE))
    active = adapter_path(lm).name
    for path in adapter_files(lm):
        mark = " [active]" if path.name == active else ""
        choices.append((_adapter_label(path, lm) + mark, path.name))
    return choices


def make_adapter_active(ctx: AppContext, name: str | None) -> str:
    """Make a listed adapter the one `kangaroo` loads (the shipped one: remove the user's)."""
    if not name:
        return "Pick an adapter first."
    lm = ctx.models.default()
    try:
        if name == SHIPPED_CHOICE:
            restore_shipped_adapter(lm)
            return "The shipped adapter is active again; yours is kept in the list."
        if not use_adapter(lm, name).changed:
            return f"`{name}` is already the active adapter."
    except SelfSpecError as exc:
        return str(exc)
    return f"Copied `{name}` to `{adapter_path(lm)}`; the `kangaroo` method loads it from there."


def install_adapter_words(ctx: AppContext, candidate: Path) -> str:
    """Install a trained adapter if its expected acceptance is higher; say what happened."""
    done = install_adapter_if_better(ctx.models.default(), candidate)
    if done.installed:
        was = "none" if done.old is None else f"{done.old:.3f}"
        return f"It is now active (expected acceptance {done.new:.3f} against {was} before)."
    return (
        f"The active adapter stays (expected acceptance {done.new or 0:.3f} is not above its "
        f"{done.old:.3f}); choose it under *Adapters* to use it anyway."
    )
