"""Database fixtures: every database test runs on a SQLite file and on a real PostgreSQL.

``pg_server`` starts one throwaway PostgreSQL cluster for the session (``db.pg_local``)
and deletes it at the end. It never skips: when the server cannot start (PostgreSQL not
installed, no ``postgres`` user to run it as root) the tests fail with the reason, so CI
cannot pass without having run them.

``db_url`` is parametrised over both backends. On PostgreSQL every test gets the same
migrated database emptied first (TRUNCATE is far quicker than a new database per test);
tests that need an empty, unmigrated database ask ``fresh_db_url``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from db import Base, Database, init_db
from db.pg_local import LocalPostgres, PostgresUnavailableError

__all__ = ["BACKENDS"]

BACKENDS = ("sqlite", "postgresql")
_SHARED = "selfspec_test"
_names = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[LocalPostgres]:
    try:
        server = LocalPostgres.start()
    except PostgresUnavailableError as error:
        pytest.fail(f"the test PostgreSQL server did not start: {error}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_shared(pg_server: LocalPostgres) -> Iterator[Database]:
    """One PostgreSQL database migrated to head, emptied before each test that uses it."""
    db = init_db(pg_server.create_database(_SHARED))
    yield db
    db.dispose()


def _empty(db: Database) -> None:
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with db.engine.begin() as connection:
        connection.execute(text("SET LOCAL lock_timeout = '10s'"))
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """URL of an empty database at the newest schema, on each backend in turn."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'study.db'}"
        init_db(url).dispose()
        return url
    shared = request.getfixturevalue("pg_shared")
    _empty(shared)
    return shared.engine.url.render_as_string(hide_password=False)


@pytest.fixture
def fresh_db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a new, empty database with no schema at all, on each backend in turn."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    server: LocalPostgres = request.getfixturevalue("pg_server")
    name = f"fresh_{next(_names)}"
    yield server.create_database(name)
    server.drop_database(name)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """An open ``Database`` on ``db_url``, disposed after the test."""
    database = init_db(db_url)
    yield database
    database.dispose()
