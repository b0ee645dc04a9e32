"""Figures -> summary lines and ``bench/RESULTS.md``: a table per path with SQLite and PostgreSQL
side by side, the targets with a verdict per database, storage and the two-process cell.

The figures themselves are in :mod:`bench.figures`, the targets in :mod:`bench.verdicts`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bench import scaling, storage
from bench.common import percentile
from bench.figures import (
    COMMANDS,
    OURS,
    POSTGRES,
    REALISTIC_OVERHEAD_S,
    SLACK_BASE,
    SLACK_FIGURES,
    TELEGRAM_BASE,
    WHATSAPP_BASE,
    Report,
    Results,
    ms,
    per,
    ratio,
    rx,
    slack_keys,
    slack_pair,
    tg_order,
    tg_pair,
    wa_keys,
    wa_order,
    wa_pair,
)
from bench.slack_bench import SlackCell
from bench.verdicts import Target, scaling_targets, storage_target, target_rows, targets

__all__ = [
    "OURS",
    "SLACK_BASE",
    "TELEGRAM_BASE",
    "WHATSAPP_BASE",
    "Report",
    "Results",
    "markdown",
    "report_lines",
    "summary_lines",
]


def _slack_summary(cells: Sequence[SlackCell], tag: str = "") -> list[str]:
    lines: list[str] = []
    for command, latency in slack_keys(cells):
        for concurrency in sorted({c.concurrency for c in cells}):
            pair = slack_pair(cells, command, latency, concurrency)
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


def summary_lines(results: Results, tag: str = "") -> list[str]:
    """One line per figure of one pass: ours, the baseline, the ratio (each after ``tag``)."""
    lines = _slack_summary(results.realistic, "realistic ERM ")
    lines += _slack_summary(results.slack)
    for command, latency in sorted({(c.command, c.latency_ms) for c in results.telegram}):
        pair = tg_pair(results.telegram, command, latency)
        if pair is None:
            continue
        ours, base = pair
        lines.append(
            f"telegram {COMMANDS[command]} erm+{latency}ms updates/s: {OURS} "
            f"{ours.throughput:.1f}/s (in order: {tg_order(ours)}) | {TELEGRAM_BASE} "
            f"{base.throughput:.1f}/s (in order: {tg_order(base)}) | "
            f"{rx(ratio(ours.throughput, base.throughput))}"
        )
        lines.append(
            f"telegram {COMMANDS[command]} erm+{latency}ms ERM calls/cmd: {OURS} "
            f"{per(ours.erm_calls_per_update)} | {TELEGRAM_BASE} {per(base.erm_calls_per_update)}"
        )
    for command, latency, senders in wa_keys(results.whatsapp):
        wa = wa_pair(results.whatsapp, command, latency, senders)
        if wa is None:
            continue
        ours_wa, base_wa = wa
        lines.append(
            f"whatsapp {COMMANDS[command].lstrip('/')} erm+{latency}ms c={senders} messages/s: "
            f"{OURS} {ours_wa.throughput:.1f}/s (in order: {wa_order(ours_wa)}) | "
            f"{WHATSAPP_BASE} {base_wa.throughput:.1f}/s (in order: {wa_order(base_wa)}) | "
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
    lines += [_target_line(target) for target in targets(results)]
    return [f"{tag}{line}" for line in lines]


def _target_line(target: Target) -> str:
    verdict = "shown" if target.met is None else "met" if target.met else "MISSED"
    return f"target {target.name} ({target.wanted}): {verdict} [{'; '.join(target.measured)}]"


def report_lines(report: Report) -> list[str]:
    """Every pass's summary (tagged with its database when there are two), then the storage
    figures and the two-process cell with their targets."""
    lines: list[str] = []
    for results in report.passes:
        tag = f"{results.database}: " if len(report.passes) > 1 else ""
        lines += summary_lines(results, tag)
    for stored in report.storage:
        lines += stored.lines()
        lines.append(_target_line(storage_target(stored)))
    if report.scaling is not None:
        lines += [f"!!! {line}" for line in scaling.problems(report.scaling)]
        lines += [_target_line(t) for t in scaling_targets(report.scaling)]
        if any(status != 0 for status in report.scaling.exit_statuses):
            lines.append(
                f"note: two-process cell's erm-bot exit statuses after SIGTERM: "
                f"{report.scaling.exit_statuses}"
            )
    lines += [f"!!! {error}" for error in report.errors]
    if report.postgres_skipped:
        lines.append(f"PostgreSQL cells skipped: {report.postgres_skipped}")
    return lines


def _slack_table(
    passes: Sequence[Results], cells_of: Callable[[Results], list[SlackCell]], key: tuple[str, int]
) -> list[str]:
    """One Slack section's table: each concurrency's rows for every database, one after the
    other (erm-bot, bare bolt and their ratio, each pass with its own baseline)."""
    command, latency = key
    head = (
        "| c | database | system | ack p50 | ack p95 | ack p99 | e2e p50 | e2e p95 | e2e p99 | "
        "commands/s | CPU ms/cmd | ERM calls/cmd | failed / wrong |"
    )
    rows = [head, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    every = [c for results in passes for c in cells_of(results)]
    for concurrency in sorted({c.concurrency for c in every}):
        for results in passes:
            pair = slack_pair(cells_of(results), command, latency, concurrency)
            if pair is None:
                continue
            where = f"| {concurrency} | {results.database}"
            for cell in pair:
                figures = [ms(f(cell)) for _, f, t in SLACK_FIGURES if t]
                rows.append(
                    f"{where} | {cell.system} | {' | '.join(figures)} | "
                    f"{cell.throughput:.1f} | {cell.cpu_ms_per_command:.1f} | "
                    f"{per(cell.erm_calls_per_command)} | {cell.failed} / {cell.wrong} |"
                )
            ours, base = pair
            ratios = [rx(ratio(f(ours), f(base))) for _, f, _ in SLACK_FIGURES]
            cpu = rx(ratio(ours.cpu_ms_per_command, base.cpu_ms_per_command))
            rows.append(f"{where} | **ratio** | {' | '.join(ratios)} | {cpu} | | |")
    return rows


def _side_by_side(passes: Sequence[Results]) -> list[str]:
    """Slack's two verdicts per cell, a column group per database: throughput ratio (target
    >= 1.0x in every cell) and ack p99 ratio (target <= 0.5x at c=50)."""
    head, rule = ["| command | ERM latency | c |"], ["|---|---:|---:|"]
    for results in passes:
        head.append(
            f" {results.database} erm-bot commands/s | {results.database} throughput ratio "
            f"| {results.database} ack p99 ratio |"
        )
        rule.append("---:|---:|---:|")
    rows = ["".join(head), "".join(rule)]
    cells = [c for results in passes for c in results.slack]
    for command, latency in slack_keys(cells):
        for concurrency in sorted({c.concurrency for c in cells}):
            row = [f"| {COMMANDS[command]} | {latency} ms | {concurrency} |"]
            for results in passes:
                pair = slack_pair(results.slack, command, latency, concurrency)
                if pair is None:
                    row.append(" n/a | n/a | n/a |")
                    continue
                ours, base = pair
                through = ratio(ours.throughput, base.throughput)
                p99 = ratio(percentile(ours.ack, 99), percentile(base.ack, 99))
                mark = "" if through >= 1.0 else " **(< 1)**"
                row.append(f" {ours.throughput:.1f} | {rx(through)}{mark} | {rx(p99)} |")
            rows.append("".join(row))
    return rows


def _telegram_table(passes: Sequence[Results]) -> list[str]:
    rows = [
        "| command | ERM latency | database | system | updates | chats | updates/s | reply p50 "
        "| reply p99 | CPU ms/update | ERM calls/cmd | replies in order per chat | wrong |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    every = {(c.command, c.latency_ms) for results in passes for c in results.telegram}
    for command, latency in sorted(every):
        for results in passes:
            pair = tg_pair(results.telegram, command, latency)
            if pair is None:
                continue
            where = f"| {COMMANDS[command]} | {latency} ms | {results.database}"
            for cell in pair:
                rows.append(
                    f"{where} | {cell.system} | {cell.updates} | {cell.chats} | "
                    f"{cell.throughput:.1f} | {ms(percentile(cell.latencies, 50))} | "
                    f"{ms(percentile(cell.latencies, 99))} | {cell.cpu_ms_per_update:.1f} | "
                    f"{per(cell.erm_calls_per_update)} | {tg_order(cell)} | {cell.wrong} |"
                )
            ours, base = pair
            rows.append(
                f"{where} | **ratio** | | | {rx(ratio(ours.throughput, base.throughput))} | | | "
                f"{rx(ratio(ours.cpu_ms_per_update, base.cpu_ms_per_update))} | | | |"
            )
    return rows


def _whatsapp_table(passes: Sequence[Results]) -> list[str]:
    rows = [
        "| command | ERM latency | senders | database | system | messages/s | ack p50 | reply p50 "
        "| reply p99 | CPU ms/message | ERM calls/cmd | replies in order per sender "
        "| failed / wrong |",
        "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for command, latency, senders in wa_keys([c for r in passes for c in r.whatsapp]):
        for results in passes:
            pair = wa_pair(results.whatsapp, command, latency, senders)
            if pair is None:
                continue
            where = (
                f"| {COMMANDS[command].lstrip('/')} | {latency} ms | {senders} | {results.database}"
            )
            for cell in pair:
                rows.append(
                    f"{where} | {cell.system} | {cell.throughput:.1f} | "
                    f"{ms(percentile(cell.ack, 50))} | {ms(percentile(cell.latencies, 50))} | "
                    f"{ms(percentile(cell.latencies, 99))} | {cell.cpu_ms_per_message:.1f} | "
                    f"{per(cell.erm_calls_per_message)} | {wa_order(cell)} | "
                    f"{cell.failed} / {cell.wrong} |"
                )
            ours, base = pair
            rows.append(
                f"{where} | **ratio** | {rx(ratio(ours.throughput, base.throughput))} | | | | "
                f"{rx(ratio(ours.cpu_ms_per_message, base.cpu_ms_per_message))} | | | |"
            )
    return rows


def _verdict(target: Target | None, ran: bool) -> tuple[str, str]:
    """(measured, met) cells of one database in the targets table."""
    if target is None:
        return ("not run" if not ran else "—", "—")
    met = "—" if target.met is None else "yes" if target.met else "**no**"
    return "<br>".join(target.measured), met


def _targets_table(report: Report) -> list[str]:
    databases = report.databases
    head = "| target | wanted |" + "".join(f" {d} | met ({d}) |" for d in databases)
    rows = [head, "|---|---|" + "---|---|" * len(databases)]
    ran = {r.database for r in report.passes} | {s.database for s in report.storage}
    ran |= {POSTGRES} if report.scaling is not None else set()
    for row in target_rows(report):
        cells = [_verdict(row.by_database.get(d), d in ran) for d in databases]
        rows.append(f"| {row.name} | {row.wanted} |" + "".join(f" {m} | {v} |" for m, v in cells))
    return rows


def _run_settings(report: Report) -> list[str]:
    first = report.passes[0]
    settings = dict(first.settings)
    databases = [r.settings.get("erm-bot database", r.database) for r in report.passes]
    if report.postgres_skipped:
        databases.append(f"PostgreSQL skipped ({report.postgres_skipped})")
    settings["erm-bot database"] = "; then ".join(databases)
    if report.storage:
        settings["Storage (`bench.storage`, in process)"] = ", ".join(
            f"{s.database} {s.n} commands" for s in report.storage
        )
    args = report.scaling_args
    settings["Two-process cell (`bench.scaling`)"] = (
        f"PostgreSQL, {args.n} `/code days` per cell, c={args.c}, ERM +{args.latency} ms"
        if report.scaling is not None and args is not None
        else "off"
    )
    out = [f"- {name}: {value}" for name, value in settings.items()]
    parts = ", ".join(f"{part} {seconds:.0f} s" for part, seconds in report.durations.items())
    total = sum(report.durations.values()) or first.duration
    out.append(f"- Duration: {total:.0f} s" + (f" ({parts})" if parts else ""))
    for results in report.passes:
        tag = f"{results.database}: " if len(report.passes) > 1 else ""
        out += [f"- {tag}{note}" for note in results.notes]
    out += [f"- **{error}**" for error in report.errors]
    return out


def markdown(report: Report | Results, findings: str = "") -> str:
    if isinstance(report, Results):
        report = Report([report])
    passes = report.passes
    out = [
        "# erm-bot benchmark results",
        "",
        "Written by `python -m bench` (`make bench`); see `bench/README.md` for what is measured "
        "and how. Absolute times depend on the machine and on what else ran on it; the ratios "
        "to the baselines, measured in the same run with the cells interleaved, are what count. "
        "Each database's pass has baselines of its own, measured in that pass.",
        "",
        "## Machine",
        "",
    ]
    out += [f"- {name}: {value}" for name, value in passes[0].machine.items()]
    out += ["", "## Run", "", *_run_settings(report)]
    out += ["", "## Targets", "", *_targets_table(report)]
    if len(passes) > 1 and any(r.slack for r in passes):
        out += ["", f"## Slack: {' and '.join(r.database for r in passes)} side by side", ""]
        out.append(
            "erm-bot's commands/s, and its ratios to bare bolt in the same pass: throughput "
            "(target at least 1.0x in every cell) and ack p99 (target at most 0.5x at c=50)."
        )
        out += ["", *_side_by_side(passes)]
    out += ["", "## Slack path", ""]
    out.append(
        "Ack: from sending the signed slash command to reading the HTTP answer. End to end (e2e): "
        "from sending it to the answer's post arriving at the fake `response_url`. commands/s: "
        "answered commands over the cell's wall time. CPU ms/cmd: CPU time of the server process "
        "(user + system) during the cell, per command. ERM calls/cmd (here and in the other "
        "paths' tables): GraphQL requests the ERM sandbox served during the cell, per command "
        "(the bare apps make exactly one). Ratios are erm-bot / bare bolt of the same database's "
        "pass."
    )
    for key in slack_keys([c for r in passes for c in r.realistic]):
        out += ["", f"### `{COMMANDS[key[0]]}` at a realistic ERM latency (+{key[1]} ms)", ""]
        out.append(
            "Right after the warm-up, so every item is known (in erm-bot's item cache); c=1, "
            "erm-bot and bare bolt back to back. The target is ERM's latency + "
            f"{REALISTIC_OVERHEAD_S * 1000:g} ms end to end."
        )
        out += ["", *_slack_table(passes, lambda r: r.realistic, key)]
    for key in slack_keys([c for r in passes for c in r.slack]):
        out += ["", f"### `{COMMANDS[key[0]]}`, ERM latency +{key[1]} ms", ""]
        out += _slack_table(passes, lambda r: r.slack, key)
    if any(r.telegram for r in passes):
        out += ["", "## Telegram path", ""]
        out.append(
            "A burst of updates queued at once on the fake Bot API and fetched by long polling; "
            "updates/s is updates over the time from queueing to the last reply; reply p50/p99 "
            "are times from queueing to each reply."
        )
        out += ["", *_telegram_table(passes)]
    if any(r.whatsapp for r in passes):
        out += ["", "## WhatsApp path", ""]
        out.append(
            "Signed webhook posts of text messages (no slash); each sender posts its messages one "
            "after the other, each once the previous post was answered, all senders at once. "
            "messages/s: replies over the time from the first post to the last reply on the "
            "fake Graph API; ack p50: post to HTTP answer; reply p50/p99: first post to each "
            "reply. The bare pywa app answers the post only after its reply is sent (pywa runs "
            "the handler first), which is how it keeps each sender's order."
        )
        out += ["", *_whatsapp_table(passes)]
    if report.storage:
        out += ["", storage.markdown(report.storage).rstrip("\n")]
    if report.scaling is not None and report.scaling_args is not None:
        out += ["", scaling.markdown(report.scaling, report.scaling_args).rstrip("\n")]
    elif report.postgres_skipped:
        out += ["", "## Two processes on one database (issue 18)", ""]
        out.append(f"Not run: PostgreSQL did not answer ({report.postgres_skipped}).")
    out += ["", "## Memory", ""]
    for results in passes:
        tag = f" ({results.database} pass)" if len(passes) > 1 else ""
        out += [
            f"- Peak RSS (VmHWM) of {n}{tag}: {mb:.1f} MB" for n, mb in results.peak_rss_mb.items()
        ]
        out += [
            f"- Lines with ERROR/Traceback in the log of {n}{tag}: {count}"
            for n, count in results.log_problems.items()
        ]
    if findings.strip():
        out += ["", findings.strip()]
    return "\n".join(out) + "\n"
