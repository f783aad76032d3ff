"""Job runs become claims: recorded when they start, with a lease, per trigger and user.

``instance`` names what must never run twice at once (a job, or a job for one user);
``trigger_at`` is the scheduled time a run answers (NULL for a run on demand), unique
per instance so that two processes firing the same trigger store one run; ``owner`` and
``lease_until`` let a run whose process died be seen as such once its lease expires.
Existing rows keep their job name as the instance.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("job_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("instance", sa.String(length=150), nullable=True))
        batch_op.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("trigger_at", db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("owner", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column("lease_until", db.types.UTCDateTime(timezone=True), nullable=True)
        )
    op.execute("UPDATE job_runs SET instance = job")
    with op.batch_alter_table("job_runs", schema=None) as batch_op:
        batch_op.alter_column("instance", existing_type=sa.String(length=150), nullable=False)
        batch_op.create_unique_constraint(
            batch_op.f("uq_job_runs_instance_trigger_at"), ["instance", "trigger_at"]
        )
        batch_op.create_index("ix_job_runs_instance_status", ["instance", "status"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_job_runs_user_id_users"),
            "users",
            ["user_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("job_runs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_job_runs_user_id_users"), type_="foreignkey")
        batch_op.drop_index("ix_job_runs_instance_status")
        batch_op.drop_constraint(batch_op.f("uq_job_runs_instance_trigger_at"), type_="unique")
        batch_op.drop_column("lease_until")
        batch_op.drop_column("owner")
        batch_op.drop_column("trigger_at")
        batch_op.drop_column("user_id")
        batch_op.drop_column("instance")
