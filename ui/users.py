"""Who is asking: every query of the app is scoped to the name this returns.

Locally there is one user, "local", and no login. On Hugging Face Spaces the user signs in
with Hugging Face and the OAuth profile's username is the name. With a password login
(SELFSPEC_PASSWORD) Gradio's own auth sets the request's username. Tests simulate
signed-in users with a request header, only when SELFSPEC_TEST_USER_HEADER is set.
"""

from __future__ import annotations

import gradio as gr

from db import Database, ensure_user
from ui.config import AppConfig

__all__ = ["LOCAL_USER", "TEST_USER_HEADER", "SignInRequired", "user_name", "user_id"]

LOCAL_USER = "local"
TEST_USER_HEADER = "x-selfspec-test-user"


class SignInRequired(gr.Error):
    def __init__(self) -> None:
        super().__init__("Sign in with Hugging Face (button at the top) to use your own notes.")


def user_name(
    config: AppConfig, request: gr.Request | None, profile: gr.OAuthProfile | None
) -> str:
    """The name whose data this request may see."""
    if config.test_user_header and request is not None:
        header = request.headers.get(TEST_USER_HEADER)
        if header:
            return header.strip()
    if profile is not None:
        return profile.username
    if config.on_spaces:
        raise SignInRequired()
    username = getattr(request, "username", None)
    return username or LOCAL_USER


def user_id(db: Database, name: str) -> int:
    """The database id of ``name``, creating the user on first use."""
    return ensure_user(db, name)
