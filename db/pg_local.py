"""A throwaway PostgreSQL server in a temporary folder, for the tests and the scale check.

Why our own and not a system service: the test suite and ``scripts/scale_check.py`` must
run on a fresh machine with nothing configured, and leave nothing behind. Debian's
``postgresql`` package (installed by ``make postgresql``) ships ``initdb``, ``pg_ctl``
and ``postgres`` under ``/usr/lib/postgresql/<version>/bin``; we make a cluster in a
fresh temporary folder, serve it on a free local port with ``trust`` authentication, and
delete the folder when done. PostgreSQL refuses to run as root, so when we are root the
server runs as the ``postgres`` system user (which the Debian package creates).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LocalPostgres", "PostgresUnavailableError", "find_bin_dir"]

SUPERUSER = "selfspec"
INSTALL_HINT = "install it with `make postgresql` (Debian: apt-get install postgresql)"
FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")
"""Durability switched off: right for a test cluster that is deleted afterwards."""


class PostgresUnavailableError(RuntimeError):
    """The throwaway server could not be started; the message says why and what to do."""


def find_bin_dir() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl`` (``$PG_BIN``, Debian's layout, or PATH)."""
    candidates = [os.environ.get("PG_BIN", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    which = shutil.which("pg_ctl")
    candidates.append(str(Path(which).resolve().parent) if which else "")
    for folder in candidates:
        if folder and (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    raise PostgresUnavailableError(f"PostgreSQL's initdb/pg_ctl were not found: {INSTALL_HINT}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_as() -> str | None:
    """The system user to run the server as: None for ourselves, ``postgres`` when root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailableError(
            "running as root, and PostgreSQL refuses root: no 'postgres' system user to run "
            f"the test server as; {INSTALL_HINT}"
        ) from None
    return "postgres"


@dataclass
class LocalPostgres:
    """A running throwaway cluster; ``url(name)`` gives a SQLAlchemy URL for a database."""

    bin_dir: Path
    folder: Path
    port: int
    user: str | None

    @classmethod
    def start(cls, *, durable: bool = False, max_connections: int = 300) -> LocalPostgres:
        """initdb into a new temporary folder and start the server on a free port.

        ``durable`` keeps PostgreSQL's default fsync settings (the scale check measures
        with them); tests switch durability off for speed.
        """
        bin_dir = find_bin_dir()
        user = _run_as()
        folder = Path(tempfile.mkdtemp(prefix="selfspec-pg-"))
        server = cls(bin_dir=bin_dir, folder=folder, port=_free_port(), user=user)
        try:
            if user is not None:
                shutil.chown(folder, user=user)
            server._run("initdb", "-D", str(server.data), "-U", SUPERUSER, "--auth=trust",
                        "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions")  # fmt: skip
            options = [f"-p {server.port}", "-c listen_addresses=127.0.0.1",
                       f"-c unix_socket_directories={folder}",
                       f"-c max_connections={max_connections}"]  # fmt: skip
            if not durable:
                options += [f"-c {setting}" for setting in FAST_SETTINGS]
            server._run("pg_ctl", "-D", str(server.data), "-l", str(folder / "server.log"),
                        "-o", " ".join(options), "-w", "-t", "60", "start")  # fmt: skip
        except BaseException:
            server.stop()
            raise
        return server

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin_dir / tool), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise PostgresUnavailableError(
                f"{tool} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()}"
                + (f"\nserver log:\n{tail}" if tail else "")
            )

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3 driver) of ``database`` on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE need that)."""
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(sql)

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create ``name`` (optionally a copy of ``template``); returns its URL."""
        suffix = f' TEMPLATE "{template}"' if template else ""
        self.execute(f'CREATE DATABASE "{name}"{suffix}')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, closing any connection still open to it."""
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its folder."""
        if (self.data / "postmaster.pid").exists():
            # Already gone is fine: the folder is removed below either way.
            with contextlib.suppress(PostgresUnavailableError):
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
