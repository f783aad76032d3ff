"""What the tabs share: configuration, database, models, the quiz/notes services.

One :class:`AppContext` per process, built by ``ui.app``; handlers receive it through
closures, so tests can build an app over a temporary database.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr

from db import Database
from selfspec import Completion, complete
from selfspec.methods import FAST_METHOD
from study.notes_service import ensure_seed_notes
from ui.config import AppConfig
from ui.models import ModelPool
from ui.users import SignInRequired, user_id, user_name

__all__ = ["AppContext"]


@dataclass
class AppContext:
    config: AppConfig
    db: Database
    models: ModelPool
    _seeded: set[int] = field(default_factory=set)

    def user(self, request: gr.Request | None, profile: gr.OAuthProfile | None) -> int:
        """Database id of the user making this request (see ``ui.users``).

        A user seen for the first time gets the seed notes on the papers, so the Notes
        and Review tabs are not empty on first visit.
        """
        uid = user_id(self.db, user_name(self.config, request, profile))
        if uid not in self._seeded:
            ensure_seed_notes(self.db, uid)
            self._seeded.add(uid)
        return uid

    def signed_in_user(
        self, request: gr.Request | None, profile: gr.OAuthProfile | None
    ) -> int | None:
        """Like :meth:`user`, but None for a visitor not signed in yet (page-load handlers
        then show nothing instead of an error)."""
        try:
            return self.user(request, profile)
        except SignInRequired:
            return None

    def complete(
        self,
        prompt: str,
        max_new_tokens: int = 256,
        *,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> Completion:
        """Text from the default model with the fastest lossless method (quiz writing);
        greedy unless a retry asks for a seeded sample."""
        return complete(
            self.models.default(),
            prompt,
            method=FAST_METHOD,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
        )

    def db_ok(self) -> bool:
        return self.db.ping()
