"""Each user's quiz writer: the model that turns their notes into cards.

``quiz_model`` names it (the bundled model or an installed model package); NULL means
"the best installed", resolved each time by ``study.quiz_model``, so installing a
larger model later upgrades the writer of every user who did not pick one.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("user_settings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quiz_model", sa.String(length=300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("user_settings", schema=None) as batch_op:
        batch_op.drop_column("quiz_model")
