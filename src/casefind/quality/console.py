"""The report on the terminal: what is wrong first, as rich tables (data text escaped, so a
provider code never becomes markup)."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

SHOW = 20           # rows of a findings table shown on the terminal (all of them are in --json/--html)
LOW_COMPLETENESS = 0.95


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def _table(title: str, columns: tuple[str, ...], right: tuple[str, ...] = ()) -> Table:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, justify="right" if c in right else "left")
    return t


def _lowest(completeness: dict) -> str:
    shares = [(v["share"], c) for c, v in completeness.items() if v["share"] is not None]
    if not shares:
        return "–"
    share, col = min(shares)
    return f"{_pct(share)} {escape(col)}" if share < 1 else "100%"


def overview(report: dict, out: Console) -> None:
    w = report["window"]
    out.print(f"[bold]Data quality[/] of {escape(report['store'])} snapshot [bold]{escape(report['snapshot_id'])}[/]: "
              f"months {w['first']} to {w['last']} (data to {w['data_end']})", soft_wrap=True)
    t = _table("Tables", ("table", "rows", "providers", "gaps", "least filled", "unknown codes", "quarantined",
                          "implausible"), ("rows", "providers", "gaps", "unknown codes", "quarantined", "implausible"))
    t.columns[0].no_wrap = True
    for name, tb in report["tables"].items():
        codes = tb.get("codes")
        t.add_row(name, f"{tb['rows']:,}", f"{tb['providers']:,}" if tb["unit_kind"] else "–",
                  _flag(tb["gaps"]), _lowest(tb["completeness"]),
                  _pct(codes["unknown_share"]) if codes else "", _flag(tb["quarantined"]["rows"]),
                  _flag(tb["implausible"]))
    out.print(t)


def _flag(n: int) -> str:
    return f"[yellow]{n:,}[/]" if n else "0"


def findings(report: dict, out: Console) -> None:
    """Gaps, low completeness, unknown codes and implausible values, each its own table."""
    if report["gaps"]:
        t = _table("Gaps: months with no rows or far fewer than their neighbours",
                   ("table", "provider", "month", "rows", "expected", "gap"), ("rows", "expected"))
        for g in report["gaps"][:SHOW]:
            t.add_row(g["table"], escape(g["label"]), g["month"], f"{g['rows']:,}", f"{g['expected']:,}", g["gap"])
        _more(out, t, len(report["gaps"]))
    low = [(n, c, v) for n, tb in report["tables"].items() for c, v in tb["completeness"].items()
           if v["share"] is not None and v["share"] < LOW_COMPLETENESS]
    if low:
        t = _table(f"Columns filled in under {LOW_COMPLETENESS:.0%} of the rows they apply to",
                   ("table", "column", "applies to", "filled"), ("filled",))
        for n, c, v in low:
            t.add_row(n, c, v["applies_to"], f"{_pct(v['share'])} of {v['applicable']:,}")
        out.print(t)
    _unknown(report, out)
    if report["implausible"]:
        t = _table("Implausible values", ("check", "table", "provider", "rows", "what", "detail"), ("rows",))
        for f in report["implausible"][:SHOW]:
            detail = ", ".join(f"{escape(str(k))} {v:,}" for k, v in f["detail"].items())
            t.add_row(f["check"], f["table"], escape(f["label"]), f"{f['rows']:,}", f["what"], detail)
        _more(out, t, len(report["implausible"]))


def _unknown(report: dict, out: Console) -> None:
    rows = [(n, c) for n, tb in report["tables"].items() if tb.get("codes") for c in tb["codes"]["top_unknown"]]
    if not rows:
        return
    t = _table("Codes no shipped codelist or dictionary knows (most frequent)",
               ("table", "system", "code", "rows", "malformed"), ("rows",))
    for n, c in sorted(rows, key=lambda r: -r[1]["rows"])[:SHOW]:
        t.add_row(n, escape(c["system"]), escape(c["code"]), f"{c['rows']:,}", "yes" if c["malformed"] else "")
    _more(out, t, len(rows))


def _more(out: Console, t: Table, n: int) -> None:
    out.print(t)
    if n > SHOW:
        out.print(f"… and {n - SHOW:,} more (all of them in --json and --html)")


def trend(report: dict, out: Console) -> None:
    tr = report.get("trend")
    if not tr:
        return
    a = tr["against"]
    t = _table(f"Against {escape(str(a.get('snapshot_id')))} ({escape(str(a.get('generated') or a.get('store')))})",
               ("table", "provider", "rows then", "rows now", "change", "months both cover: then → now"),
               ("rows then", "rows now", "change"))
    for r in tr["tables"]:
        t.add_row(r["table"], "all", f"{r['rows_then']:,}", f"{r['rows_now']:,}", _change(r), _common(r))
    for r in tr["providers"]:
        if r["status"] or (r["change_share"] is not None and abs(r["change_share"]) >= 0.1):
            label = escape(r["label"]) + (f" [yellow]({r['status']})[/]" if r["status"] else "")
            t.add_row(r["table"], label, f"{r['rows_then']:,}", f"{r['rows_now']:,}", _change(r), _common(r))
    out.print(t)


def _change(r: dict) -> str:
    share = "" if r["change_share"] is None else f" ({r['change_share']:+.1%})"
    return f"{r['change']:+,}{share}"


def _common(r: dict) -> str:
    if not r["common_months"]:
        return "–"
    first, last = r["common_months"]
    return f"{first}–{last}: {r['common_then']:,} → {r['common_now']:,}"


def thresholds(report: dict, out: Console) -> None:
    if not report["thresholds"]:
        return
    t = _table("--fail-on", ("threshold", "result", "where"))
    for r in report["thresholds"]:
        where = ", ".join(f"{escape(str(w['where']))} {w['value']:.4g}" for w in r["where"][:5])
        t.add_row(escape(r["rule"]), "[red]crossed[/]" if r["crossed"] else "[green]ok[/]", where)
    out.print(t)


def show(report: dict, out: Console) -> None:
    overview(report, out)
    findings(report, out)
    trend(report, out)
    thresholds(report, out)
