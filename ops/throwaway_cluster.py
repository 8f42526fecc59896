"""Throwaway PostgreSQL clusters on free loopback ports, run as the `postgres` user.

The drill needs whole clusters (archiving on, a restore into an empty data directory), not
databases on the shared server, so it makes its own with the server's own tools.
"""

import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

POSTGRES_USER = "postgres"


def _server_bin_dir() -> Path:
    """The newest installed server's bin directory (Debian keeps them off the PATH)."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(re.sub(r"\D", "", path.parent.parent.name) or 0),
    )
    if versions:
        return versions[-1].parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise FileNotFoundError("no PostgreSQL server found (apt-get install postgresql)")
    return Path(initdb).parent


def as_postgres(command: list[str]) -> list[str]:
    """`command` run as the postgres user when we are root, as ourselves otherwise."""
    if os.geteuid() == 0:
        return ["runuser", "-u", POSTGRES_USER, "--", *command]
    return command


def give_to_postgres(path: Path) -> None:
    """Make `path` (a directory we created) the postgres user's, when we are root."""
    if os.geteuid() == 0:
        shutil.chown(path, POSTGRES_USER, POSTGRES_USER)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def run(command: list[str], env: dict[str, str] | None = None) -> str:
    """Run a command; its output, or an error carrying that output when it fails."""
    result = subprocess.run(
        command,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited with {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result.stdout


@dataclass
class Cluster:
    """One data directory and the server started on it."""

    data: Path
    socket_dir: Path
    port: int
    # Environment of the server process, so archive_command and restore_command see it.
    env: dict[str, str]
    extra_settings: dict[str, str]

    @property
    def log_file(self) -> Path:
        return self.data.parent / f"{self.data.name}.log"

    def url(self, database: str) -> str:
        """A DATABASE_URL (postgresql+asyncpg) for `database` on this cluster, over TCP."""
        return f"postgresql+asyncpg://{POSTGRES_USER}@127.0.0.1:{self.port}/{database}"

    def initdb(self) -> None:
        """Create the data directory with trust authentication and checksums."""
        run(
            as_postgres(
                [
                    str(_server_bin_dir() / "initdb"),
                    "--pgdata",
                    str(self.data),
                    "--username",
                    POSTGRES_USER,
                    "--auth=trust",
                    "--data-checksums",
                    "--no-sync",
                ]
            )
        )

    def include(self, config_file: Path) -> None:
        """Have postgresql.conf include `config_file` (kept in restores made from it)."""
        with (self.data / "postgresql.conf").open("a") as config:
            config.write(f"\ninclude '{config_file}'\n")

    def start(self) -> None:
        """Start the server on its port and socket, waiting until it accepts connections."""
        settings = {
            "port": str(self.port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.socket_dir),
            **self.extra_settings,
        }
        options = " ".join(f"-c {name}={value}" for name, value in settings.items())
        run(
            as_postgres(
                [
                    str(_server_bin_dir() / "pg_ctl"),
                    "--pgdata",
                    str(self.data),
                    "--log",
                    str(self.log_file),
                    "--options",
                    options,
                    "--wait",
                    "--timeout=120",
                    "start",
                ]
            ),
            self.env,
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (mode `immediate` is a crash); nothing when it is not running."""
        if not (self.data / "postmaster.pid").exists():
            return
        run(
            as_postgres(
                [
                    str(_server_bin_dir() / "pg_ctl"),
                    "--pgdata",
                    str(self.data),
                    "--mode",
                    mode,
                    "--wait",
                    "stop",
                ]
            )
        )

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log, for error messages."""
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
