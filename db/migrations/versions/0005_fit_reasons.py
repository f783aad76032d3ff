"""Why each memory model's parameters are what they are; old Ebbinghaus fits dropped.

``fit_reasons`` maps a model name to the sentence the last refit decided (adopted on
later reviews, or not, and why), so the user can be told what schedules their cards.
The Ebbinghaus lapse and same-day laws changed form in this release, so parameters
fitted under the old form no longer mean the same; they are removed and the user is
scheduled by the new defaults until a refit earns its place on their later reviews.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_settings = sa.table(
    "user_settings",
    sa.column("user_id", sa.Integer()),
    sa.column("fitted_params", sa.JSON()),
)


def upgrade() -> None:
    with op.batch_alter_table("user_settings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fit_reasons", sa.JSON(), nullable=True))
    bind = op.get_bind()
    for user_id, fitted in bind.execute(sa.select(_settings.c.user_id, _settings.c.fitted_params)):
        if fitted and "ebbinghaus" in fitted:
            kept = {name: params for name, params in fitted.items() if name != "ebbinghaus"}
            bind.execute(
                _settings.update().where(_settings.c.user_id == user_id).values(fitted_params=kept)
            )


def downgrade() -> None:
    with op.batch_alter_table("user_settings", schema=None) as batch_op:
        batch_op.drop_column("fit_reasons")
