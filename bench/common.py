"""Helpers of the harness: percentiles, child processes, peak RSS, the machine description."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.metadata
import os
import platform
import signal
import socket
import sys
import time
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

import aiohttp

LIBRARIES = (
    "slack_bolt",
    "slack_sdk",
    "python-telegram-bot",
    "httpx",
    "aiohttp",
    "uvicorn",
    "starlette",
    "SQLAlchemy",
    "aiosqlite",
    "asyncpg",
    "graphql-core",
)


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100), linear between the closest ranks; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@contextlib.contextmanager
def no_gc_pauses() -> Iterator[None]:
    """The harness's cyclic GC off while a cell runs, after a collection that is not timed.

    The fakes record every call, so the harness's heap grows; one full collection of it took
    230 ms here, stopping the load generator's clock for both systems alike.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def http_session() -> aiohttp.ClientSession:
    """The harness's HTTP client: no connection limit, and no reuse of a connection idle 2 s.

    uvicorn closes a keep-alive connection after 5 s idle. A post sent on one it is closing
    fails (server disconnected) and would count as an unanswered command; between cells, while
    another process warms up, connections sit idle that long.
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=2.0),
        timeout=aiohttp.ClientTimeout(total=60),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def memory_mb(pid: int) -> tuple[float, float]:
    """``(VmHWM, VmRSS)`` of ``pid`` in MB (peak and current resident set); NaN when unknown."""
    values = {"VmHWM": float("nan"), "VmRSS": float("nan")}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in values:
                values[name] = int(rest.split()[0]) / 1024
    return values["VmHWM"], values["VmRSS"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (from /proc/<pid>/stat); NaN when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@dataclass
class Child:
    """A process the harness started, with its output in a log file."""

    name: str
    process: asyncio.subprocess.Process
    log_path: Path
    log_file: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def memory(self) -> tuple[float, float]:
        return memory_mb(self.pid)

    def log_tail(self, chars: int = 3000) -> str:
        self.log_file.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    async def stop(self, within: float = 20.0, sig: int = signal.SIGTERM) -> int | None:
        """``sig``, then SIGKILL when it does not end ``within`` seconds; the exit status."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)
            try:
                await asyncio.wait_for(self.process.wait(), within)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        self.log_file.close()
        return self.process.returncode


async def start(
    name: str, argv: Sequence[str], *, env: dict[str, str], cwd: Path, logs: Path
) -> Child:
    log_path = logs / f"{name}.log"
    log_file = log_path.open("wb")
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log_file,
        stderr=asyncio.subprocess.STDOUT,
    )
    return Child(name, process, log_path, log_file)


async def wait_healthy(child: Child, url: str, within: float = 60.0) -> None:
    """Until ``GET url`` answers 200; RuntimeError with the log tail if the process ends."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if child.process.returncode is not None:
                raise RuntimeError(
                    f"{child.name} exited with {child.process.returncode}:\n{child.log_tail()}"
                )
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{child.name} did not answer {url} within {within:g} s")


async def start_erm(cwd: Path, logs: Path) -> tuple[Child, str]:
    """The ERM stand-in (``bench.erm_server``) on a free port, answering; its base URL."""
    port = free_port()
    child = await start(
        "erm-sandbox",
        [sys.executable, "-m", "bench.erm_server", "--port", str(port)],
        env=child_environment(),
        cwd=cwd,
        logs=logs,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(child, f"{base}/_sandbox/health")
    except BaseException:
        await child.stop()
        raise
    return child, base


def child_environment(**overrides: str) -> dict[str, str]:
    """The harness's environment without any bot or platform setting, plus ``overrides``."""
    prefixes = ("ERM_", "SLACK_", "TELEGRAM_", "BENCH_")
    base = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return {**base, **overrides}


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _os_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    return platform.system()


def _memory_total() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GB"
    return "unknown"


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    versions = []
    for name in LIBRARIES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "CPU": f"{os.cpu_count()} x {_cpu_model()}",
        "Memory": _memory_total(),
        "OS": f"{_os_name()} (kernel {platform.release()})",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "Libraries": ", ".join(versions),
        "Load average at start": load,
    }


@dataclass
class ERMCalls:
    """The GraphQL requests the ERM sandbox served during a cell, by operation name: the
    difference of two readings of its counter (``bench.erm_server``), taken before the cell's
    first command and after its last answer. ``measured`` is False until then."""

    operations: dict[str, int] = field(default_factory=dict)
    measured: bool = False

    @classmethod
    def between(cls, before: Mapping[str, int], after: Mapping[str, int]) -> ERMCalls:
        changed = {name: n - before.get(name, 0) for name, n in after.items()}
        return cls({name: n for name, n in sorted(changed.items()) if n}, measured=True)

    @property
    def total(self) -> int:
        return sum(self.operations.values())

    def per(self, commands: int) -> float:
        """Calls per command; NaN when not measured or nothing was sent."""
        return self.total / commands if self.measured and commands else float("nan")


class RepliedCell(Protocol):
    """What a throughput cell records of its replies (the Telegram and WhatsApp cells)."""

    wall: float
    replied: int
    wrong: int
    latencies: list[float]
    examples: list[str]


def judge_replies(
    cell: RepliedCell,
    replies: Sequence[tuple[Hashable, str, float]],
    expected: Mapping[Hashable, list[str]],
    started: float,
) -> int:
    """Record ``replies`` (who, text, when) in ``cell``; how many senders got every reply, in the
    order they asked. A reply that answers none of its sender's commands counts as wrong."""
    cell.replied = len(replies)
    if replies:
        cell.wall = max(at for _, _, at in replies) - started
    cell.latencies = [at - started for _, _, at in replies]
    by_sender: dict[Hashable, list[str]] = {}
    for who, text, _ in replies:
        by_sender.setdefault(who, []).append(text)
    in_order = 0
    for who, markers in expected.items():
        got = by_sender.get(who, [])
        whole = len(got) == len(markers)
        for text, marker in zip(got, markers, strict=False):
            if marker not in text:
                whole = False
                if not any(m in text for m in markers):
                    cell.wrong += 1
                    if len(cell.examples) < 3:
                        cell.examples.append(text[:200])
        in_order += whole
    return in_order
