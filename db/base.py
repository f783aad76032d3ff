"""The declarative base every table derives from.

The naming convention gives every constraint a deterministic name. Alembic needs names
to drop or alter constraints later, and SQLite's batch mode (copy-and-move of a table)
can only recreate constraints that have one.
"""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

__all__ = ["Base", "NAMING_CONVENTION"]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Root of the ORM models; carries the shared metadata and naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
