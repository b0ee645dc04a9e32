"""Figures -> summary lines and ``bench/RESULTS.md``: a table per path, ratios, targets."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from bench.common import percentile
from bench.slack_bench import SlackCell
from bench.telegram_bench import TelegramCell
from bench.whatsapp_bench import WhatsAppCell

OURS = "erm-bot"
SLACK_BASE = "bare bolt"
TELEGRAM_BASE = "bare PTB"
WHATSAPP_BASE = "bare pywa"
COMMANDS = {"code": "/code days", "history": "/history"}

RSS_LIMIT_MB = 150.0
# Issue 18: at a realistic ERM latency, a known item's /code days costs ERM's latency plus this.
REALISTIC_OVERHEAD_S = 0.015


@dataclass
class Target:
    name: str
    wanted: str
    measured: list[str]
    met: bool


@dataclass
class Results:
    machine: dict[str, str]
    settings: dict[str, str]
    slack: list[SlackCell] = field(default_factory=list)
    realistic: list[SlackCell] = field(default_factory=list)  # Slack /code days at ERM +250 ms
    telegram: list[TelegramCell] = field(default_factory=list)
    whatsapp: list[WhatsAppCell] = field(default_factory=list)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    log_problems: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    duration: float = float("nan")


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def ratio(ours: float, base: float) -> float:
    return ours / base if base and not math.isnan(base) else float("nan")


def rx(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}x"


def per(value: float) -> str:
    """ERM calls per command."""
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def _pair(
    cells: Sequence[SlackCell], command: str, latency: int, concurrency: int
) -> tuple[SlackCell, SlackCell] | None:
    found = {
        c.system: c
        for c in cells
        if (c.command, c.latency_ms, c.concurrency) == (command, latency, concurrency)
    }
    if OURS in found and SLACK_BASE in found:
        return found[OURS], found[SLACK_BASE]
    return None


def _tg_pair(
    cells: Sequence[TelegramCell], command: str, latency: int
) -> tuple[TelegramCell, TelegramCell] | None:
    found = {c.system: c for c in cells if (c.command, c.latency_ms) == (command, latency)}
    if OURS in found and TELEGRAM_BASE in found:
        return found[OURS], found[TELEGRAM_BASE]
    return None


def _wa_pair(
    cells: Sequence[WhatsAppCell], command: str, latency: int, senders: int
) -> tuple[WhatsAppCell, WhatsAppCell] | None:
    found = {
        c.system: c
        for c in cells
        if (c.command, c.latency_ms, c.senders) == (command, latency, senders)
    }
    if OURS in found and WHATSAPP_BASE in found:
        return found[OURS], found[WHATSAPP_BASE]
    return None


def _wa_keys(cells: Sequence[WhatsAppCell]) -> list[tuple[str, int, int]]:
    return sorted(
        {(c.command, c.latency_ms, c.senders) for c in cells}, key=lambda k: (k[1], k[0], k[2])
    )


def _keys(cells: Iterable[SlackCell]) -> list[tuple[str, int]]:
    return sorted({(c.command, c.latency_ms) for c in cells}, key=lambda k: (k[1], k[0]))


SLACK_FIGURES: tuple[tuple[str, Callable[[SlackCell], float], bool], ...] = (
    ("ack p50", lambda c: percentile(c.ack, 50), True),
    ("ack p95", lambda c: percentile(c.ack, 95), True),
    ("ack p99", lambda c: percentile(c.ack, 99), True),
    ("end-to-end p50", lambda c: percentile(c.e2e, 50), True),
    ("end-to-end p95", lambda c: percentile(c.e2e, 95), True),
    ("end-to-end p99", lambda c: percentile(c.e2e, 99), True),
    ("throughput", lambda c: c.throughput, False),
)


def _slack_summary(cells: Sequence[SlackCell], tag: str = "") -> list[str]:
    lines: list[str] = []
    for command, latency in _keys(cells):
        for concurrency in sorted({c.concurrency for c in cells}):
            pair = _pair(cells, command, latency, concurrency)
            if pair is None:
                continue
            ours, base = pair
            where = f"{tag}slack {COMMANDS[command]} erm+{latency}ms c={concurrency}"
            for name, figure, is_time in SLACK_FIGURES:
                a, b = figure(ours), figure(base)
                shown = (ms(a), ms(b)) if is_time else (f"{a:.1f}/s", f"{b:.1f}/s")
                lines.append(
                    f"{where} {name}: {OURS} {shown[0]} | {SLACK_BASE} {shown[1]} | "
                    f"{rx(ratio(a, b))}"
                )
            lines.append(
                f"{where} ERM calls/cmd: {OURS} {per(ours.erm_calls_per_command)} | "
                f"{SLACK_BASE} {per(base.erm_calls_per_command)}"
            )
    for cell in cells:
        if cell.failed or cell.wrong:
            lines.append(
                f"{tag}slack {COMMANDS[cell.command]} erm+{cell.latency_ms}ms "
                f"c={cell.concurrency} {cell.system}: {cell.failed} failed, {cell.wrong} wrong "
                "answers"
            )
    return lines


def summary_lines(results: Results) -> list[str]:
    """One line per figure: ours, the baseline, the ratio."""
    lines = _slack_summary(results.realistic, "realistic ERM ")
    lines += _slack_summary(results.slack)
    for command, latency in sorted({(c.command, c.latency_ms) for c in results.telegram}):
        pair = _tg_pair(results.telegram, command, latency)
        if pair is None:
            continue
        ours, base = pair
        lines.append(
            f"telegram {COMMANDS[command]} erm+{latency}ms updates/s: {OURS} "
            f"{ours.throughput:.1f}/s (in order: {_order(ours)}) | {TELEGRAM_BASE} "
            f"{base.throughput:.1f}/s (in order: {_order(base)}) | "
            f"{rx(ratio(ours.throughput, base.throughput))}"
        )
        lines.append(
            f"telegram {COMMANDS[command]} erm+{latency}ms ERM calls/cmd: {OURS} "
            f"{per(ours.erm_calls_per_update)} | {TELEGRAM_BASE} {per(base.erm_calls_per_update)}"
        )
    for command, latency, senders in _wa_keys(results.whatsapp):
        wa = _wa_pair(results.whatsapp, command, latency, senders)
        if wa is None:
            continue
        ours_wa, base_wa = wa
        lines.append(
            f"whatsapp {COMMANDS[command].lstrip('/')} erm+{latency}ms c={senders} messages/s: "
            f"{OURS} {ours_wa.throughput:.1f}/s (in order: {_wa_order(ours_wa)}) | "
            f"{WHATSAPP_BASE} {base_wa.throughput:.1f}/s (in order: {_wa_order(base_wa)}) | "
            f"{rx(ratio(ours_wa.throughput, base_wa.throughput))}"
        )
        lines.append(
            f"whatsapp {COMMANDS[command].lstrip('/')} erm+{latency}ms c={senders} ERM calls/cmd: "
            f"{OURS} {per(ours_wa.erm_calls_per_message)} | "
            f"{WHATSAPP_BASE} {per(base_wa.erm_calls_per_message)}"
        )
    for wcell in results.whatsapp:
        if wcell.failed or wcell.wrong or wcell.timed_out:
            lines.append(
                f"whatsapp {COMMANDS[wcell.command].lstrip('/')} erm+{wcell.latency_ms}ms "
                f"c={wcell.senders} {wcell.system}: {wcell.failed} failed, {wcell.wrong} wrong"
                + (", timed out" if wcell.timed_out else "")
                + (f": {'; '.join(wcell.examples)}" if wcell.examples else "")
            )
    for name, mb in results.peak_rss_mb.items():
        lines.append(f"peak RSS (VmHWM) {name}: {mb:.1f} MB")
    for target in targets(results):
        lines.append(
            f"target {target.name} ({target.wanted}): {'met' if target.met else 'MISSED'}"
            f" [{'; '.join(target.measured)}]"
        )
    return lines


def _order(cell: TelegramCell) -> str:
    if cell.in_order:
        return "yes"
    return f"{cell.chats_in_order}/{cell.chats} chats"


def _wa_order(cell: WhatsAppCell) -> str:
    if cell.in_order:
        return "yes"
    return f"{cell.senders_in_order}/{cell.senders} senders"


def _ours_code(cell: SlackCell | TelegramCell | WhatsAppCell) -> bool:
    return cell.system == OURS and cell.command == "code" and cell.erm_calls.measured


def _realistic_targets(results: Results) -> list[Target]:
    """Issue 18: a known item's ``/code days`` at a realistic ERM latency costs that latency plus
    at most 15 ms end to end, and one ERM call (the code mutation) wherever it is asked."""
    out: list[Target] = []
    for command, latency in _keys(results.realistic):
        pair = _pair(results.realistic, command, latency, 1)
        if pair is None:
            continue
        ours, base = pair
        p50 = percentile(ours.e2e, 50)
        limit = latency / 1000 + REALISTIC_OVERHEAD_S
        out.append(
            Target(
                f"Slack `{COMMANDS[command]}` e2e p50 at ERM +{latency} ms",
                f"<= {latency} + {REALISTIC_OVERHEAD_S * 1000:g} ms",
                [f"{OURS} {ms(p50)}", f"{SLACK_BASE} {ms(percentile(base.e2e, 50))}"],
                p50 <= limit,
            )
        )
    slack = [c for c in [*results.realistic, *results.slack] if _ours_code(c)]
    paths = [
        ("Slack", [(c.erm_calls.total, c.sent) for c in slack]),
        ("Telegram", [(c.erm_calls.total, c.updates) for c in results.telegram if _ours_code(c)]),
        ("WhatsApp", [(c.erm_calls.total, c.messages) for c in results.whatsapp if _ours_code(c)]),
    ]
    measured, met = [], True
    for path, cells in paths:
        if not cells:
            continue
        calls, commands = sum(c for c, _ in cells), sum(n for _, n in cells)
        met = met and all(c == n for c, n in cells)
        measured.append(f"{path} {per(calls / commands)} ({calls} calls, {commands} commands)")
    if measured:
        out.append(
            Target(f"ERM calls per cached `{COMMANDS['code']}` ({OURS})", "= 1", measured, met)
        )
    return out


def targets(results: Results) -> list[Target]:
    out: list[Target] = []
    checks: list[tuple[str, str, int, Callable[[SlackCell], float], float, bool]] = [
        ("Slack ack p50 at c=1", "<= 0.25x bare bolt", 1, lambda c: percentile(c.ack, 50),
         0.25, True),
        ("Slack ack p99 at c=50", "<= 0.5x bare bolt", 50, lambda c: percentile(c.ack, 99),
         0.5, True),
    ]  # fmt: skip
    for name, wanted, concurrency, figure, limit, at_most in checks:
        measured, met, seen = [], True, False
        for command, latency in _keys(results.slack):
            pair = _pair(results.slack, command, latency, concurrency)
            if pair is None:
                continue
            seen = True
            value = ratio(figure(pair[0]), figure(pair[1]))
            ok = value <= limit if at_most else value >= limit
            met = met and ok
            measured.append(f"{COMMANDS[command]} erm+{latency}ms {rx(value)}")
        if seen:
            out.append(Target(name, wanted, measured, met))
    measured, met, seen = [], True, False
    for command, latency in _keys(results.slack):
        for concurrency in sorted({c.concurrency for c in results.slack}):
            pair = _pair(results.slack, command, latency, concurrency)
            if pair is None:
                continue
            seen = True
            value = ratio(pair[0].throughput, pair[1].throughput)
            met = met and value >= 1.0
            measured.append(f"{COMMANDS[command]} erm+{latency}ms c={concurrency} {rx(value)}")
    if seen:
        out.append(Target("Slack throughput", ">= 1.0x bare bolt", measured, met))
    measured, met, seen = [], True, False
    for command, latency in sorted({(c.command, c.latency_ms) for c in results.telegram}):
        pair = _tg_pair(results.telegram, command, latency)
        if pair is None:
            continue
        seen = True
        value = ratio(pair[0].throughput, pair[1].throughput)
        met = met and value >= 1.0 and pair[0].in_order
        measured.append(
            f"{COMMANDS[command]} erm+{latency}ms {rx(value)}, in order: {_order(pair[0])}"
        )
    if seen:
        out.append(
            Target(
                "Telegram throughput",
                ">= 1.0x bare PTB (concurrent updates), replies in order per chat",
                measured,
                met,
            )
        )
    measured, met, seen = [], True, False
    for command, latency, senders in _wa_keys(results.whatsapp):
        wa = _wa_pair(results.whatsapp, command, latency, senders)
        if wa is None:
            continue
        seen = True
        value = ratio(wa[0].throughput, wa[1].throughput)
        met = met and value >= 1.0 and wa[0].in_order
        measured.append(
            f"{COMMANDS[command].lstrip('/')} erm+{latency}ms c={senders} {rx(value)}, "
            f"in order: {_wa_order(wa[0])}"
        )
    if seen:
        out.append(
            Target(
                "WhatsApp throughput",
                f">= 1.0x {WHATSAPP_BASE}, replies in order per sender",
                measured,
                met,
            )
        )
    if OURS in results.peak_rss_mb:
        mb = results.peak_rss_mb[OURS]
        out.append(
            Target(
                "peak RSS of one process serving Slack, Telegram and WhatsApp",
                f"< {RSS_LIMIT_MB:g} MB",
                [f"{mb:.1f} MB"],
                mb < RSS_LIMIT_MB,
            )
        )
    out += _realistic_targets(results)
    return out


def _slack_table(cells: Sequence[SlackCell], command: str, latency: int) -> list[str]:
    head = (
        "| c | system | ack p50 | ack p95 | ack p99 | e2e p50 | e2e p95 | e2e p99 | "
        "commands/s | CPU ms/cmd | ERM calls/cmd | failed / wrong |"
    )
    rows = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for concurrency in sorted({c.concurrency for c in cells}):
        pair = _pair(cells, command, latency, concurrency)
        if pair is None:
            continue
        for cell in pair:
            figures = [ms(f(cell)) for _, f, t in SLACK_FIGURES if t]
            rows.append(
                f"| {concurrency} | {cell.system} | {' | '.join(figures)} | "
                f"{cell.throughput:.1f} | {cell.cpu_ms_per_command:.1f} | "
                f"{per(cell.erm_calls_per_command)} | {cell.failed} / {cell.wrong} |"
            )
        ours, base = pair
        ratios = [rx(ratio(f(ours), f(base))) for _, f, _ in SLACK_FIGURES]
        cpu = rx(ratio(ours.cpu_ms_per_command, base.cpu_ms_per_command))
        rows.append(f"| {concurrency} | **ratio** | {' | '.join(ratios)} | {cpu} | | |")
    return rows


def _telegram_table(results: Results) -> list[str]:
    rows = [
        "| command | ERM latency | system | updates | chats | updates/s | reply p50 | reply p99 "
        "| CPU ms/update | ERM calls/cmd | replies in order per chat | wrong |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for command, latency in sorted({(c.command, c.latency_ms) for c in results.telegram}):
        pair = _tg_pair(results.telegram, command, latency)
        if pair is None:
            continue
        for cell in pair:
            rows.append(
                f"| {COMMANDS[command]} | {latency} ms | {cell.system} | {cell.updates} | "
                f"{cell.chats} | {cell.throughput:.1f} | {ms(percentile(cell.latencies, 50))} | "
                f"{ms(percentile(cell.latencies, 99))} | {cell.cpu_ms_per_update:.1f} | "
                f"{per(cell.erm_calls_per_update)} | {_order(cell)} | {cell.wrong} |"
            )
        ours, base = pair
        rows.append(
            f"| {COMMANDS[command]} | {latency} ms | **ratio** | | | "
            f"{rx(ratio(ours.throughput, base.throughput))} | | | "
            f"{rx(ratio(ours.cpu_ms_per_update, base.cpu_ms_per_update))} | | | |"
        )
    return rows


def _whatsapp_table(results: Results) -> list[str]:
    rows = [
        "| command | ERM latency | senders | system | messages/s | ack p50 | reply p50 | reply p99 "
        "| CPU ms/message | ERM calls/cmd | replies in order per sender | failed / wrong |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for command, latency, senders in _wa_keys(results.whatsapp):
        pair = _wa_pair(results.whatsapp, command, latency, senders)
        if pair is None:
            continue
        where = f"| {COMMANDS[command].lstrip('/')} | {latency} ms | {senders}"
        for cell in pair:
            rows.append(
                f"{where} | {cell.system} | {cell.throughput:.1f} | "
                f"{ms(percentile(cell.ack, 50))} | {ms(percentile(cell.latencies, 50))} | "
                f"{ms(percentile(cell.latencies, 99))} | {cell.cpu_ms_per_message:.1f} | "
                f"{per(cell.erm_calls_per_message)} | {_wa_order(cell)} | "
                f"{cell.failed} / {cell.wrong} |"
            )
        ours, base = pair
        rows.append(
            f"{where} | **ratio** | {rx(ratio(ours.throughput, base.throughput))} | | | | "
            f"{rx(ratio(ours.cpu_ms_per_message, base.cpu_ms_per_message))} | | | |"
        )
    return rows


def markdown(results: Results, findings: str = "") -> str:
    out = [
        "# erm-bot benchmark results",
        "",
        "Written by `python -m bench` (`make bench`); see `bench/README.md` for what is measured "
        "and how. Absolute times depend on the machine and on what else ran on it; the ratios "
        "to the baselines, measured in the same run with the cells interleaved, are what count.",
        "",
        "## Machine",
        "",
    ]
    out += [f"- {name}: {value}" for name, value in results.machine.items()]
    out += ["", "## Run", ""]
    out += [f"- {name}: {value}" for name, value in results.settings.items()]
    out.append(f"- Duration: {results.duration:.0f} s")
    out += [f"- {note}" for note in results.notes]
    out += ["", "## Targets", "", "| target | wanted | measured | met |", "|---|---|---|---|"]
    for target in targets(results):
        out.append(
            f"| {target.name} | {target.wanted} | {'<br>'.join(target.measured)} | "
            f"{'yes' if target.met else '**no**'} |"
        )
    out += ["", "## Slack path", ""]
    out.append(
        "Ack: from sending the signed slash command to reading the HTTP answer. End to end (e2e): "
        "from sending it to the answer's post arriving at the fake `response_url`. commands/s: "
        "answered commands over the cell's wall time. CPU ms/cmd: CPU time of the server process "
        "(user + system) during the cell, per command. ERM calls/cmd (here and in the other "
        "paths' tables): GraphQL requests the ERM sandbox served during the cell, per command "
        "(the bare apps make exactly one). Ratios are erm-bot / bare bolt."
    )
    for command, latency in _keys(results.realistic):
        out += ["", f"### `{COMMANDS[command]}` at a realistic ERM latency (+{latency} ms)", ""]
        out.append(
            "Right after the warm-up, so every item is known (in erm-bot's item cache); c=1, "
            "erm-bot and bare bolt back to back. The target is ERM's latency + "
            f"{REALISTIC_OVERHEAD_S * 1000:g} ms end to end."
        )
        out += ["", *_slack_table(results.realistic, command, latency)]
    for command, latency in _keys(results.slack):
        out += ["", f"### `{COMMANDS[command]}`, ERM latency +{latency} ms", ""]
        out += _slack_table(results.slack, command, latency)
    if results.telegram:
        out += ["", "## Telegram path", ""]
        out.append(
            "A burst of updates queued at once on the fake Bot API and fetched by long polling; "
            "updates/s is updates over the time from queueing to the last reply; reply p50/p99 "
            "are times from queueing to each reply."
        )
        out += ["", *_telegram_table(results)]
    if results.whatsapp:
        out += ["", "## WhatsApp path", ""]
        out.append(
            "Signed webhook posts of text messages (no slash); each sender posts its messages one "
            "after the other, each once the previous post was answered, all senders at once. "
            "messages/s: replies over the time from the first post to the last reply on the "
            "fake Graph API; ack p50: post to HTTP answer; reply p50/p99: first post to each "
            "reply. The bare pywa app answers the post only after its reply is sent (pywa runs "
            "the handler first), which is how it keeps each sender's order."
        )
        out += ["", *_whatsapp_table(results)]
    out += ["", "## Memory", ""]
    out += [f"- Peak RSS (VmHWM) of {n}: {mb:.1f} MB" for n, mb in results.peak_rss_mb.items()]
    if results.log_problems:
        out += [
            f"- Lines with ERROR/Traceback in the log of {n}: {count}"
            for n, count in results.log_problems.items()
        ]
    if findings.strip():
        out += ["", findings.strip()]
    return "\n".join(out) + "\n"
