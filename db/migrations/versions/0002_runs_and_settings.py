"""Per-user settings and the records of quiz-generation and decoding runs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "decode_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("method", sa.String(length=100), nullable=False),
        sa.Column("model", sa.String(length=300), nullable=False),
        sa.Column("tokens_per_s", sa.Float(), nullable=True),
        sa.Column("speedup", sa.Float(), nullable=True),
        sa.Column("mean_accepted", sa.Float(), nullable=True),
        sa.Column("acceptance_rate", sa.Float(), nullable=True),
        sa.Column("lossless", sa.Boolean(), nullable=True),
        sa.Column("created_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_decode_runs_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decode_runs")),
    )
    with op.batch_alter_table("decode_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_decode_runs_created_at"), ["created_at"], unique=False)

    op.create_table(
        "user_settings",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("memory_model", sa.String(length=50), nullable=False),
        sa.Column("desired_retention", sa.Float(), nullable=False),
        sa.Column("daily_new_limit", sa.Integer(), nullable=False),
        sa.Column("maximum_interval_days", sa.Integer(), nullable=False),
        sa.Column("daily_job_time", sa.String(length=5), nullable=False),
        sa.Column("fitted_params", sa.JSON(), nullable=False),
        sa.Column("fitted_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("fitted_review_count", sa.Integer(), nullable=False),
        sa.CheckConstraint("daily_new_limit >= 0", name=op.f("ck_user_settings_new_limit")),
        sa.CheckConstraint(
            "desired_retention >= 0.7 AND desired_retention <= 0.97",
            name=op.f("ck_user_settings_retention"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_settings_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_settings")),
    )

    op.create_table(
        "quiz_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("note_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("model", sa.String(length=300), nullable=True),
        sa.Column("method", sa.String(length=100), nullable=True),
        sa.Column("tokens_per_s", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("cards_created", sa.Integer(), nullable=False),
        sa.Column("started_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["note_id"], ["notes.id"], name=op.f("fk_quiz_runs_note_id_notes"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_quiz_runs_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quiz_runs")),
    )
    with op.batch_alter_table("quiz_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quiz_runs_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_table("quiz_runs")
    op.drop_table("user_settings")
    op.drop_table("decode_runs")
