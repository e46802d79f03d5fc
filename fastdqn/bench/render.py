"""Tables as text: rich for the console, Markdown for the README. Both read
the same cells (`table_cells`), so the two never disagree."""

from __future__ import annotations

import sys
from typing import Any

from .machine import header_line, titled
from .model import Report, Row, Table


def fmt_time(s: float | None) -> str:
    if s is None:
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def fmt_rate(s: float | None) -> str:
    if not s:
        return "—"
    r = 1.0 / s
    return f"{r:,.0f}/s" if r >= 100 else f"{r:.3g}/s"


def fmt_bytes(b: Any) -> str:
    if b is None:
        return "—"
    b = float(b)
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= scale:
            return f"{b / scale:.3g} {unit}"
    return f"{b:,.0f} B"


def fmt_ratio(row: Row) -> str:
    if row.ratio is None:
        return "—"
    if row.role == "baseline":
        return "1.00x (baseline)"
    return f"{row.ratio:.2f}x ({row.ratio_q1:.2f}–{row.ratio_q3:.2f})"


def _extra(v: Any, col: str) -> str:
    if v is None:
        return "—"
    return fmt_bytes(v) if "bytes" in col else str(v)


def _value(c: Any, f: str) -> str:
    if c is None:
        return "—"
    if f == "bytes":
        return fmt_bytes(c)
    if f == "int":
        return f"{float(c):,.0f}"
    return str(c)


def table_cells(t: Table) -> tuple[list[str], list[list[str]]]:
    if t.kind == "values":
        fmts = t.formats or ["text"] * len(t.columns)
        rows = [[_value(c, f) for c, f in zip(r, fmts)] for r in t.cells]
        return list(t.columns), rows
    head = ["path", f"time/{t.unit} (median)", "IQR", "rate", "speed-up vs baseline (IQR)",
            *t.extra_columns, "notes"]
    rows = []
    for r in t.rows:
        if r.skipped is not None:
            rows.append([r.name, "—", "—", "—", "—", *["—"] * len(t.extra_columns), r.skipped])
            continue
        iqr = f"{fmt_time(r.q1_s)} – {fmt_time(r.q3_s)}"
        rows.append([r.name, fmt_time(r.median_s), iqr, fmt_rate(r.median_s), fmt_ratio(r),
                     *[_extra(r.extra.get(c), c) for c in t.extra_columns], r.note])
    return head, rows


def to_markdown(report: Report) -> str:
    out = ["## Performance", "", f"Machine: {header_line(report.machine)}.", "",
           f"Mode: `{report.config.get('mode')}`, {report.config.get('rounds')} interleaved rounds per row; "
           f"whole run {report.elapsed_s:.0f} s. Speed-up = baseline time / row time, median of "
           "per-round ratios (IQR in brackets); > 1 is faster.", ""]
    for t in report.tables:
        head, rows = table_cells(t)
        out += [f"### {titled(t.title, report.machine)}", ""]
        out.append("| " + " | ".join(h.replace("|", "\\|") for h in head) + " |")
        out.append("|" + "|".join("---" for _ in head) + "|")
        out += ["| " + " | ".join(" ".join(c.split()).replace("|", "\\|") for c in r) + " |" for r in rows]
        out += [""] + [f"_{n}_" for n in t.notes] + [""]
    return "\n".join(out)


def print_report(report: Report, console=None) -> None:
    from rich.console import Console
    from rich.table import Table as RichTable
    from rich.text import Text

    # Not a terminal (pipe, CI log): wide enough that rows don't fold into columns of 12.
    console = console or Console(width=None if sys.stdout.isatty() else 180)
    console.print(f"[bold]fastdqn bench[/] ({report.config.get('mode')}) on {header_line(report.machine)}")
    for t in report.tables:
        head, rows = table_cells(t)
        # The title on its own line: as the table's title it would wrap to a narrow table's width.
        console.print(Text(titled(t.title, report.machine), style="italic"), soft_wrap=True)
        rt = RichTable(caption=" ".join(t.notes) or None, caption_justify="left")
        for i, h in enumerate(head):
            rt.add_column(h, justify="left" if i == 0 or h == "notes" else "right",
                          overflow="fold", max_width=48 if i == 0 or h == "notes" else None)
        for r in rows:
            rt.add_row(*r, style="dim" if len(r) < 2 or r[1] == "—" else None)  # a failed group: one cell
        console.print(rt)
    console.print(f"total {report.elapsed_s:.1f} s")
