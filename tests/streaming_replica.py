"""A real streaming replica of the test server, made by a test and removed after it.

`pg_basebackup -R` copies the server into a temporary directory, which `pg_ctl` starts as a
hot standby on a free loopback port, as the `postgres` user when the tests run as root. The
server's pg_hba.conf gets a replication entry for the copy and the standby's streaming, taken
out again (and the server reloaded) however the test ends.
"""

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import make_url

from branchloans.migrate import asyncpg_dsn
from tests.support import free_port

RUN_AS = "postgres"
RECEIVER_TIMEOUT_SECONDS = 6
# A standby needs at least the primary's values of these, or it refuses to start.
_AT_LEAST_THE_PRIMARYS = (
    "max_connections",
    "max_prepared_transactions",
    "max_locks_per_transaction",
    "max_wal_senders",
    "max_worker_processes",
)


def _as_service_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", RUN_AS, "--", *command]


async def _query(dsn: str, sql: str) -> Any:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()


def query(url: str, sql: str) -> Any:
    """The first value `sql` returns on the server at `url`; callable with or without a
    running event loop (its own loop runs in a thread of its own)."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, _query(asyncpg_dsn(url), sql)).result()


@dataclass
class StreamingReplica:
    """A running hot standby: its URL (any database name) and how to drive it."""

    url: str
    directory: Path
    bindir: Path

    def database_url(self, database_url: str) -> str:
        """`database_url`'s database, on the replica."""
        replica = make_url(self.url)
        return (
            make_url(database_url)
            .set(host=replica.host, port=replica.port)
            .render_as_string(hide_password=False)
        )

    def pg_ctl(self, *arguments: str) -> None:
        """Run pg_ctl on the replica's data directory."""
        subprocess.run(
            _as_service_user([str(self.bindir / "pg_ctl"), "-D", str(self.directory), *arguments]),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        """Start the standby and wait until it accepts connections."""
        self.pg_ctl("-l", str(self.directory / "server.log"), "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Stop it at once (its clients are cut off, as when a machine goes away)."""
        self.pg_ctl("-m", "immediate", "-w", "stop")

    def sql(self, statement: str, database: str = "postgres") -> Any:
        """The first value of `statement`, run on the replica."""
        return query(make_url(self.url).set(database=database).render_as_string(False), statement)

    @contextmanager
    def cut_off(self) -> Iterator[None]:
        """The standby's primary_conninfo aimed at a closed port for the while: its WAL
        receiver stops and cannot reconnect, as when the primary is out of reach."""
        original = self.sql("SHOW primary_conninfo")
        self._reconfigure(f"host=127.0.0.1 port={free_port()} connect_timeout=1")
        try:
            self._wait_until(lambda: self.silent_seconds() is None, "the WAL receiver stopped")
            yield
        finally:
            self._reconfigure(original)
            self._wait_until(lambda: self.silent_seconds() is not None, "streaming resumed")

    def _reconfigure(self, conninfo: str) -> None:
        literal = conninfo.replace("'", "''")
        self.sql(f"ALTER SYSTEM SET primary_conninfo = '{literal}'")
        self.sql("SELECT pg_reload_conf()")

    def _wait_until(self, done: Callable[[], bool], what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"not so within {timeout} s: {what}")
            time.sleep(0.1)

    def silent_seconds(self) -> float | None:
        """Seconds since the standby last heard from its primary; None with no WAL receiver
        streaming."""
        silence = self.sql(
            "SELECT extract(epoch FROM now() - last_msg_receipt_time)::float8"
            " FROM pg_stat_wal_receiver WHERE status = 'streaming'"
        )
        return None if silence is None else float(silence)

    def wait_for_database(self, name: str, timeout: float = 60) -> None:
        """Until the replica has replayed the creation of database `name`."""
        deadline = time.monotonic() + timeout
        while self.sql(f"SELECT count(*) FROM pg_database WHERE datname = '{name}'") == 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"database {name} did not reach the replica")
            time.sleep(0.2)


@contextmanager
def _replication_allowed(server_url: str, hba_file: Path) -> Iterator[None]:
    user = make_url(server_url).username or "postgres"
    marker = f"# branchloans test replica {uuid.uuid4().hex}"
    original = hba_file.read_text()
    # First: pg_hba.conf's first matching line decides.
    hba_file.write_text(f"host replication {user} 127.0.0.1/32 trust {marker}\n{original}")
    try:
        query(server_url, "SELECT pg_reload_conf()")
        yield
    finally:
        kept = [line for line in hba_file.read_text().splitlines(True) if marker not in line]
        hba_file.write_text("".join(kept))
        query(server_url, "SELECT pg_reload_conf()")


def _settings(server_url: str, port: int, directory: Path) -> str:
    lines = [
        "hot_standby = on",
        "listen_addresses = '127.0.0.1'",
        f"port = {port}",
        f"unix_socket_directories = '{directory}'",
        "archive_mode = off",
        "shared_buffers = 32MB",
        # Replay is paused by some tests: a query on the replica is never cancelled for it.
        "max_standby_streaming_delay = -1",
        # The standby pings a silent primary after half of it: every 3 s, not every 30 s, so
        # a test sees a cut-off link fall silent within seconds.
        f"wal_receiver_timeout = {RECEIVER_TIMEOUT_SECONDS}s",
    ]
    for name in _AT_LEAST_THE_PRIMARYS:
        value = query(server_url, f"SELECT setting FROM pg_settings WHERE name = '{name}'")
        lines.append(f"{name} = {value}")
    return "\n".join(lines) + "\n"


def server_files(server_url: str) -> tuple[Path, Path] | None:
    """The server's pg_hba.conf and program directory, or None when they are not on this
    machine (a server in a container, say)."""
    hba_file = Path(query(server_url, "SHOW hba_file"))
    bindir = Path(query(server_url, "SELECT setting FROM pg_config() WHERE name = 'BINDIR'"))
    if hba_file.is_file() and (bindir / "pg_basebackup").is_file():
        return hba_file, bindir
    return None


@contextmanager
def streaming_replica(server_url: str) -> Iterator[StreamingReplica]:
    """A hot standby of the server at `server_url` (on this machine), streaming from it,
    removed at the end."""
    files = server_files(server_url)
    assert files is not None, "the server's files are not on this machine"
    hba_file, bindir = files
    server = make_url(server_url)
    directory = Path(tempfile.mkdtemp(prefix="branchloans-replica-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam(RUN_AS)
        os.chown(directory, owner.pw_uid, owner.pw_gid)
    directory.chmod(0o700)
    port = free_port()
    replica = StreamingReplica(
        server.set(host="127.0.0.1", port=port).render_as_string(hide_password=False),
        directory,
        bindir,
    )
    started = False
    try:
        with _replication_allowed(server_url, hba_file):
            subprocess.run(
                _as_service_user(
                    [
                        str(bindir / "pg_basebackup"),
                        f"--host={server.host or '127.0.0.1'}",
                        f"--port={server.port or 5432}",
                        f"--username={server.username or 'postgres'}",
                        f"--pgdata={directory}",
                        "--write-recovery-conf",
                        "--wal-method=stream",
                        "--checkpoint=fast",
                        "--no-sync",
                    ]
                ),
                check=True,
                capture_output=True,
                timeout=600,
            )
            # Debian keeps the server's configuration in /etc, outside the copy: the standby
            # gets its own (the copy's postgresql.auto.conf holds primary_conninfo).
            for name, text in (
                ("postgresql.conf", _settings(server_url, port, directory)),
                ("pg_hba.conf", "local all all trust\nhost all all 127.0.0.1/32 trust\n"),
                ("pg_ident.conf", ""),
            ):
                (directory / name).write_text(text)
                if os.geteuid() == 0:
                    os.chown(directory / name, owner.pw_uid, owner.pw_gid)
            started = True
            replica.start()
            yield replica
    finally:
        if started:
            subprocess.run(
                _as_service_user(
                    [str(bindir / "pg_ctl"), "-D", str(directory), "-m", "immediate", "stop"]
                ),
                capture_output=True,
                timeout=120,
            )
        shutil.rmtree(directory, ignore_errors=True)
