"""``casefind diagnose``: compile the rules, evaluate each at every date it needs in one
engine call, then size, turnover, overlap, PPV and crisis curves, written by report.py."""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from casefind.contract.dates import shift_date
from casefind.diagnose import cohort, crisis, overlap, ppv, sharded, turnover
from casefind.errors import UsageError
from casefind.rules.compile import CompiledRule, compile_rule
from casefind.store import Store, decisions, listings
from casefind.store.coverage import CoverageError
from casefind.store.sharded import open_any


@dataclass(frozen=True)
class Options:
    """What a diagnosis covers: ``against`` a run id; the crisis curve's window and washout
    in months (``window`` 0: no crisis curve)."""

    against: str | None = None
    window: int = 6
    washout: int = 6
    engine: str = "native"


@dataclass
class Diagnosis:
    as_of: dt.date
    store_snapshot: str
    rules: list[CompiledRule]
    sizes: dict[str, dict[str, int]]            # rule -> practice -> people
    turnover: list[turnover.Turnover]
    overlap: overlap.Overlap
    ppv: list[dict]
    curves: list[crisis.Curve]
    options: Options
    timings: dict[str, float] = field(default_factory=dict)
    out_dir: Path | None = None


def _listing(store_root: Path, run_id: str | None, names: list[str]) -> listings.Listing | None:
    if run_id is None:
        return None
    found = listings.get(store_root, run_id)
    if found is None:
        known = ", ".join(f"{x.run_id} ({x.rule} {x.as_of})" for x in listings.runs(store_root)[-5:]) or "none"
        raise UsageError(f"no registered run {run_id!r}", f"recent runs: {known}", option="--against")
    if found.rule not in names:
        raise UsageError(f"run {run_id} listed rule {found.rule!r}, which is not among the rules diagnosed",
                         f"add {found.rule} to the rules", option="--against")
    return found


def _check_order(listing: listings.Listing | None, as_of: dt.date) -> None:
    """Turnover runs forward: the run compared against must be dated before --as-of."""
    if listing is not None and listing.as_of >= as_of:
        raise UsageError(f"run {listing.run_id} is as of {listing.as_of}, not before --as-of {as_of}: turnover "
                         "compares an earlier cohort with a later one",
                         f"give an --as-of after {listing.as_of}, or a run from before {as_of}", option="--against")


def _dates(as_of: dt.date, earlier: dt.date | None, window: crisis.Window | None) -> list[dt.date]:
    """Now, a year earlier (unless a run gives the earlier cohort) and the crisis curve's month-ends."""
    return sorted({as_of} | ({earlier} if earlier else set()) | set(window.dates if window else []))


_CRISIS_HINT = ("the crisis curve reads 12 months before each identification and the rule's look-back before "
                "its washout: give a later --as-of, a shorter --window or --washout, or --window 0 for no curve")


def _check(store: Store, rule: CompiledRule, as_of: dt.date, earlier: dt.date | None,
           window: crisis.Window | None) -> None:
    cohort.check_dates(store, rule, [d for d in (earlier, as_of) if d], "turnover")
    if window is not None:
        try:
            cohort.check_dates(store, rule, window.dates, "crisis curve")
        except CoverageError as e:
            raise CoverageError(e.message.removeprefix("--as-of: "), _CRISIS_HINT, option="--window") from None


def diagnose(rule_paths: list[Path], store_root: Path, as_of: dt.date, options: Options = Options(), *,
             params: dict[str, str] | None = None, progress: Callable[[str], None] | None = None) -> Diagnosis:
    """Every diagnostic for ``rule_paths`` at ``as_of`` (see docs/diagnose.md)."""
    say = progress or (lambda s: None)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    rules = [compile_rule(p, as_of=as_of, params=params) for p in rule_paths]
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise UsageError(f"a rule is named twice: {', '.join(names)}")
    store = open_any(store_root)
    people = sharded.patients(store, say)
    listing = _listing(store_root, options.against, names)
    _check_order(listing, as_of)
    window = crisis.Window(crisis.last_month_end(as_of), options.window, options.washout) if options.window else None
    earlier = {r.name: None if listing is not None and listing.rule == r.name else shift_date(as_of, -12)
               for r in rules}
    for rule in rules:  # every rule's dates checked before any work, so a refusal names no half-done step
        _check(people, rule, as_of, earlier[rule.name], window)
    timings["compile"] = time.perf_counter() - t
    sizes, moves, curves, now = {}, [], [], {}
    values = None
    if window is not None:
        t = time.perf_counter()
        say("monthly cost and admissions")
        months = window.identification_months
        values = sharded.monthly(store, people, int(months[0]) - crisis.SPAN, int(months[-1]) + crisis.SPAN, say)
        timings["monthly"] = time.perf_counter() - t
    for rule in rules:
        mine = listing if listing is not None and listing.rule == rule.name else None
        year_earlier = earlier[rule.name]
        t = time.perf_counter()
        dates = _dates(as_of, year_earlier, window)
        say(f"evaluating {rule.name} at {len(dates)} dates ({options.engine} engine)")
        found = sharded.cohorts(store, people, rule, dates, options.engine, say)
        timings[f"evaluate:{rule.name}"] = time.perf_counter() - t
        now[rule.name] = found.at(as_of)
        sizes[rule.name] = cohort.sizes_by_practice(people, now[rule.name])
        moves.append(_turnover(people, rule.name, found, as_of, year_earlier, mine))
        if window is not None:
            t = time.perf_counter()
            say(f"crisis curve for {rule.name}")
            curves.append(crisis.curve(people, _window_only(found, window), window, values))
            timings[f"crisis:{rule.name}"] = time.perf_counter() - t
    say("overlap and positive predictive value")
    log = decisions.in_force(decisions.read_log(store_root))
    return Diagnosis(as_of, people.snapshot_id, rules, sizes, moves, overlap.overlap(now),
                     ppv.ppv_rows(log, names, as_of), curves, options, timings)


def _window_only(found: cohort.Cohorts, window: crisis.Window) -> cohort.Cohorts:
    """The cohorts at the crisis curve's month-ends only, in date order."""
    dates = window.dates
    return cohort.Cohorts(found.rule, tuple(dates), np.stack([found.at(d) for d in dates]))


def _turnover(store: Store, name: str, found: cohort.Cohorts, as_of: dt.date, year_earlier: dt.date | None,
              listing: listings.Listing | None) -> turnover.Turnover:
    if listing is None:
        return turnover.between(store, name, found.at(year_earlier), found.at(as_of), year_earlier, as_of)
    mask, other, missing = turnover.from_listing(store, listing)
    return turnover.between(store, name, mask, found.at(as_of), listing.as_of, as_of, moved_practice=other,
                            not_in_store=missing, against=listing.run_id)
