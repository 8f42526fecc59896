"""The README: short enough to read, and every `curl` of its tour works against a live server."""

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import LiveServer, database_of_its_own, live_server

README = Path(__file__).resolve().parents[1] / "README.md"
DOCUMENTED_URL = "http://127.0.0.1:8000"


def tour_commands() -> list[str]:
    """Each curl command in the bash blocks of "A one-minute tour", as bash would read it:
    backslash continuations joined, a quoted argument kept whole across lines."""
    tour = README.read_text().split("## A one-minute tour", 1)[1].split("\n## ", 1)[0]
    commands, pending = [], ""
    for block in re.findall(r"```bash\n(.*?)```", tour, flags=re.DOTALL):
        for line in re.sub(r"\\\n", " ", block).splitlines():
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            pending += line + "\n"
            try:
                shlex.split(pending)
            except ValueError:  # an open quote: the command goes on
                continue
            commands.append(pending.strip())
            pending = ""
    return [command for command in commands if command.startswith("curl ")]


@pytest.fixture(scope="module")
def seeded_server() -> Iterator[LiveServer]:
    """`make run`'s server on a database of its own: the demo loans as seeded, untouched."""
    with database_of_its_own("readme") as url:
        env = {"DATABASE_URL": url}
        seed = [sys.executable, "-m", "branchloans.cli", "seed"]
        subprocess.run(seed, env={**os.environ, **env}, check=True, capture_output=True)
        with live_server(env) as server:
            yield server


def test_readme_fits_on_a_few_screens() -> None:
    assert len(README.read_text().splitlines()) < 250


def test_the_tour_has_curl_commands() -> None:
    assert len(tour_commands()) >= 6


@pytest.mark.parametrize("command", tour_commands())
def test_every_curl_of_the_tour_answers_as_the_readme_says(
    seeded_server: LiveServer, command: str
) -> None:
    arguments = shlex.split(command.replace(DOCUMENTED_URL, seeded_server.url))
    # The status alone, on stdout; the body and headers are the README's business.
    status = subprocess.run(
        [*arguments, "-o", "/dev/null", "-w", "%{http_code}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    creates = re.search(r"-X POST \S+/api/loans ", command) is not None
    expected = "422" if "dollars" in command else "201" if creates else "200"
    assert status == expected, command
