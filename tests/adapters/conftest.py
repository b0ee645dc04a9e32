"""Fixtures for the ``erm-bot`` command tests: the CLI in a subprocess, the sandbox on loopback.

Every CLI run is a child process in ``tmp_path`` (so no developer ``.env`` is read) with the test
process's environment minus every ``ERM_*`` variable, plus what the test sets; each is bounded by a
timeout and killed if it overruns.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from erm.sandbox import create_app, seed_state, serve
from erm.sandbox.state import SandboxState

CONSOLE_SCRIPT = Path(sys.executable).with_name("erm-bot")
MODULE_COMMAND = (sys.executable, "-m", "adapters.cli")
RUN_TIMEOUT = 60.0
"""Seconds any one CLI run may take (the demo, the slowest, takes a few)."""


def clean_environment() -> dict[str, str]:
    """The test process's environment without any ERM_* setting."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("ERM_")}


def erm_bot_command() -> tuple[str, ...]:
    """The installed ``erm-bot`` console script, as a user runs it."""
    if not CONSOLE_SCRIPT.exists():
        pytest.fail(f"{CONSOLE_SCRIPT} is missing: install the project with `pip install -e .`")
    return (str(CONSOLE_SCRIPT),)


async def stop(process: asyncio.subprocess.Process) -> None:
    """Kill ``process`` if it still runs, and reap it."""
    if process.returncode is None:
        process.kill()
    await asyncio.wait_for(process.wait(), RUN_TIMEOUT)


@dataclass(frozen=True)
class Completed:
    """What one CLI run did."""

    returncode: int
    stdout: str
    stderr: str


class Cli:
    """Runs ``erm-bot`` in a child process in the test's directory, with a controlled environment.

    ``env`` holds the test's ERM_* settings; a call can add to them, and a value of ``None``
    removes a variable for that call.
    """

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.env: dict[str, str] = {}

    async def __call__(
        self,
        *args: str,
        stdin: str | None = None,
        env: Mapping[str, str | None] | None = None,
        command: tuple[str, ...] | None = None,
        timeout: float = RUN_TIMEOUT,
    ) -> Completed:
        environment = {**clean_environment(), **self.env}
        for key, value in (env or {}).items():
            if value is None:
                environment.pop(key, None)
            else:
                environment[key] = value
        process = await asyncio.create_subprocess_exec(
            *(command or erm_bot_command()),
            *args,
            cwd=self.cwd,
            env=environment,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            data = stdin.encode() if stdin is not None else b""
            out, err = await asyncio.wait_for(process.communicate(data), timeout)
        except TimeoutError:
            pytest.fail(f"`erm-bot {' '.join(args)}` did not finish within {timeout} s")
        finally:
            await stop(process)
        assert process.returncode is not None
        return Completed(process.returncode, out.decode(), err.decode())


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """``erm-bot`` run in ``tmp_path`` with no ERM_* setting (tests add theirs to ``cli.env``)."""
    return Cli(tmp_path)


@dataclass(frozen=True)
class Sandbox:
    url: str
    state: SandboxState


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """The sandbox ERM served over loopback HTTP by uvicorn in the test's event loop."""
    state = seed_state()
    async with serve(create_app(state)) as url:
        yield Sandbox(url, state)
