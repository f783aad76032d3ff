"""The memory model the user's own reviews chose, for users whose setting is ``auto``.

``memory_model = 'auto'`` (the default for new users from this release) lets the refit
job choose between the scheduling models on the user's latest reviews
(``study.memory.choice``); ``chosen_model`` stores its choice, NULL until a refit has
compared them (the default model schedules). Its verdict in words goes in
``fit_reasons['auto']``. Existing rows keep the model they name: nothing is changed.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("user_settings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chosen_model", sa.String(length=50), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("user_settings", schema=None) as batch_op:
        batch_op.drop_column("chosen_model")
