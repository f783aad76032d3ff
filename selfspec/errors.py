"""User-facing errors of the decoding library.

Every failure a user can cause (a model that cannot be loaded, a prompt that is too long,
a setting out of range) is raised as a :class:`SelfSpecError` whose message says what was
wrong and what to do, so the CLI and the app can show it without a traceback.
"""

__all__ = ["SelfSpecError", "ModelLoadError", "BadInputError"]


class SelfSpecError(Exception):
    """Base class: the message is meant for the user, not for a debugger."""


class ModelLoadError(SelfSpecError):
    """The requested model cannot be loaded (offline, unsupported, missing package)."""


class BadInputError(SelfSpecError):
    """A prompt, a setting or an input file is not acceptable."""
