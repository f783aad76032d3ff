"""What the tabs share: configuration, database, models, the quiz/notes services.

One :class:`AppContext` per process, built by ``ui.app``; handlers receive it through
closures, so tests can build an app over a temporary database.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr

from db import Database
from study.notes_service import ensure_seed_notes
from study.quiz.generate import Complete
from study.quiz_model import QuizWriter, bind_writer, fastest_exact_method, writer_for_setting
from ui.config import AppConfig
from ui.models import ModelPool
from ui.users import SignInRequired, user_id, user_name

__all__ = ["AppContext"]


@dataclass
class AppContext:
    config: AppConfig
    db: Database
    models: ModelPool
    _user_ids: dict[str, int] = field(default_factory=dict)

    def user(self, request: gr.Request | None, profile: gr.OAuthProfile | None) -> int:
        """Database id of the user making this request (see ``ui.users``).

        A user seen for the first time gets the seed notes on the papers, so the Notes
        and Review tabs are not empty on first visit. The id is then kept for the life
        of the process (users are never deleted or renamed), so a request, a rating
        above all, does not pay a write transaction just to learn who is asking.
        """
        name = user_name(self.config, request, profile)
        uid = self._user_ids.get(name)
        if uid is None:
            uid = user_id(self.db, name)
            ensure_seed_notes(self.db, uid)
            self._user_ids[name] = uid
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

    def quiz_writer(self, setting: str | None) -> tuple[QuizWriter, Complete]:
        """The writer of a user's ``quiz_model`` setting (``study.quiz_model``) on the
        pooled model, one per name, with its fastest exact method. When the pool refuses
        the model (not allowed here, failed to load) its default writes, and the writer's
        notice says why."""
        writer = writer_for_setting(setting, self.config.default_model)
        choice = self.models.get(writer.model)
        if choice.notice:
            source = choice.model.source
            writer = QuizWriter(source, fastest_exact_method(source), choice.notice)
        return writer, bind_writer(choice.model, writer)

    def quiz_complete(self, setting: str | None) -> Complete:
        """Only the writer's completion (what the prepare-questions job asks for)."""
        return self.quiz_writer(setting)[1]

    def db_ok(self) -> bool:
        return self.db.ping()
