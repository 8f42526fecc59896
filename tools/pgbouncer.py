"""A real PgBouncer in transaction pooling mode on a loopback port, for the tests and the bench."""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import make_url

# PgBouncer refuses to run as root: as root, the tests run it as the server's own user.
RUN_AS = "postgres"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _as_service_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", RUN_AS, "--", *command]


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited: {log.read_text(errors='replace')}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"pgbouncer did not listen within 15 s: {log.read_text(errors='replace')}")


@contextmanager
def pgbouncer_in_front_of(database_url: str, *, server_connections: int = 4) -> Iterator[str]:
    """PgBouncer in transaction mode before `database_url`'s server; the same URL through it.

    Few server connections for many clients, so statements of different clients do share
    server connections, as they do in production.
    """
    url = make_url(database_url)
    port = _free_port()
    directory = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    if os.geteuid() == 0:
        service_user = pwd.getpwnam(RUN_AS)
        os.chown(directory, service_user.pw_uid, service_user.pw_gid)
    log = directory / "pgbouncer.log"
    user = url.username or "postgres"
    # Clients are trusted (loopback only); the file names the user and PgBouncer's password
    # for the server.
    (directory / "users.txt").write_text(f'"{user}" "{url.password or ""}"\n')
    (directory / "pgbouncer.ini").write_text(
        f"""[databases]
* = host={url.host or "127.0.0.1"} port={url.port or 5432}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {directory / "users.txt"}
pool_mode = transaction
default_pool_size = {server_connections}
max_client_conn = 500
query_timeout = 30
idle_transaction_timeout = 30
logfile = {log}
pidfile = {directory / "pgbouncer.pid"}
"""
    )
    for name in ("users.txt", "pgbouncer.ini"):
        (directory / name).chmod(0o644)
    process = subprocess.Popen(
        _as_service_user(["pgbouncer", str(directory / "pgbouncer.ini")]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_port(port, process, log)
        yield url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)
