"""Statistical disclosure control of KPI results: a policy applied after computation and roll-up.

Control comes last, never before roll-up: localities and the system are sums of their
practices' exact counts, and suppressing or rounding first would bias every total.

The defaults follow NHS Digital's "Disclosure control methodology for Hospital Episode
Statistics (HES) and Emergency Care Data Set (ECDS)" (digital.nhs.uk, in use from September
2018 and since adopted for other NHS Digital data such as SRHAD and the DQMI): below national
level, counts of 1 to 7 are replaced by '*' and every other count is rounded to the nearest 5
(0 is published as 0); a mean or median from 1 to 7 values is not given; percentages are
worked out from the rounded numerator and denominator; standardised rates and confidence
intervals need no further control. Rounding, not secondary suppression, is what stops a
suppressed cell being worked out by subtracting its neighbours from a total, so keep
``round_to`` above 1 where cells are suppressed. ``suppress_below=8`` is that 1-7 rule; KPI
files may choose their own. An integrated care system is itself below national level: the
default leaves the system level uncontrolled, for use inside the system; add "system" to
``apply_to_levels`` to follow HES to the letter (as for figures published outside the NHS).
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np

from casefind.kpis import stats

LEVELS = ("practice", "locality", "system")
COUNT_KINDS = ("proportion", "rate", "total", "ratio")  # kinds whose numerator is a count of people or events
REQUIRED_COLUMNS = ("level", "numerator", "denominator", "value", "lower", "upper")


@dataclass(frozen=True)
class DisclosurePolicy:
    """What to suppress and round, and at which levels of the hierarchy.

    suppress_below: counts from 1 to suppress_below − 1 are suppressed (8: HES's 1-7 rule;
        0 or 1 suppresses nothing).
    round_to: published counts are rounded to the nearest multiple (halves up); 0 or 1 keeps them.
    apply_to_levels: the levels controlled; others (by default the system) are published as
        computed, as HES publishes national figures.
    suppress_zero: also suppress counts of 0 (for measures where "none" is itself disclosive).
    derive_from_rounded: work proportions, crude rates and totals out again from the rounded
        counts, as HES does; otherwise an exact value would give the unrounded counts back.
    """

    suppress_below: int = 8
    round_to: int = 5
    apply_to_levels: tuple[str, ...] = ("practice", "locality")
    suppress_zero: bool = False
    derive_from_rounded: bool = True

    def __post_init__(self):
        for name in ("suppress_below", "round_to"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"disclosure.{name} must be a whole number, 0 or more; got {v!r}")
        for name in ("suppress_zero", "derive_from_rounded"):
            v = getattr(self, name)
            if not isinstance(v, bool):
                raise ValueError(f"disclosure.{name} must be true or false; got {v!r}")
        levels = self.apply_to_levels
        if isinstance(levels, str):
            levels = (levels,)
        if not isinstance(levels, (list, tuple)):
            raise ValueError(f"disclosure.apply_to_levels must be a list of levels, e.g. [practice, locality]; "
                             f"got {levels!r}")
        for lv in levels:
            if lv not in LEVELS:
                raise ValueError(f"disclosure.apply_to_levels: unknown level {lv!r}; levels are {', '.join(LEVELS)}")
        object.__setattr__(self, "apply_to_levels", tuple(levels))

    @classmethod
    def from_mapping(cls, data: Mapping | None) -> DisclosurePolicy:
        """The policy from a KPI file's ``disclosure:`` mapping; missing keys take the defaults.

        Raises ValueError naming the key for unknown keys and bad values.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ValueError(f"disclosure must be a mapping (suppress_below, round_to, ...); got {data!r}")
        names = [f.name for f in fields(cls)]
        for key in data:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"disclosure: unknown key {key!r}{hint}; keys are {', '.join(names)}")
        return cls(**dict(data))

    def apply(self, numerator, denominator, value, lower, upper, level, **kw) -> dict[str, np.ndarray]:
        """``apply`` with this policy."""
        return apply(numerator, denominator, value, lower, upper, level, self, **kw)


def _round(x: np.ndarray, step: int) -> np.ndarray:
    if step <= 1:
        return x
    return np.floor(x / step + 0.5) * step


def _small(x: np.ndarray, policy: DisclosurePolicy) -> np.ndarray:
    small = (x > 0) & (x < policy.suppress_below)
    return small | (x == 0) if policy.suppress_zero else small


def _as_strings(x, shape) -> np.ndarray:
    return np.broadcast_to(np.asarray(x, dtype=object), shape).astype(str)


def apply(numerator, denominator, value, lower, upper, level, policy: DisclosurePolicy | None = None, *,
          kind=None, multiplier=None, standardised=None, ci_level: float = 0.95) -> dict[str, np.ndarray]:
    """Suppress and round KPI cells: arrays in, arrays out (with a boolean ``suppressed``).

    A controlled cell (its ``level`` in ``apply_to_levels``) is suppressed when its
    denominator (people) or, for count kinds, its numerator is small; all five numbers of a
    suppressed cell become NaN. Other controlled cells have their counts rounded.

    ``kind`` (per cell, or None: every numerator is a count) says whether the numerator is a
    count (proportion, rate, total) or an amount (mean, per_head, median: only the number of
    people, the denominator, is tested and rounded). With ``kind`` and ``multiplier`` given and
    ``derive_from_rounded`` on, proportions (Wilson), crude rates (exact/Byar) and totals are
    worked out again from the rounded counts, with intervals at ``ci_level``; ``standardised``
    cells (DSRs) keep their values.
    """
    policy = policy or DisclosurePolicy()
    num, den, val, lo, hi = (np.array(x, dtype=np.float64) for x in (numerator, denominator, value, lower, upper))
    num, den, val, lo, hi = np.broadcast_arrays(num, den, val, lo, hi)
    num, den, val, lo, hi = (np.array(x) for x in (num, den, val, lo, hi))  # writable copies
    shape = num.shape
    controlled = np.isin(_as_strings(level, shape), policy.apply_to_levels)
    kinds = None if kind is None else _as_strings(kind, shape)
    counted = np.ones(shape, bool) if kinds is None else np.isin(kinds, COUNT_KINDS)
    suppressed = controlled & (_small(den, policy) | (counted & _small(num, policy)))
    keep = controlled & ~suppressed
    num = np.where(keep & counted, _round(num, policy.round_to), num)
    den = np.where(keep, _round(den, policy.round_to), den)
    if kinds is not None and multiplier is not None and policy.derive_from_rounded and policy.round_to > 1:
        std = np.zeros(shape, bool) if standardised is None else np.broadcast_to(np.asarray(standardised, bool), shape)
        _rederive(num, den, val, lo, hi, kinds, np.broadcast_to(np.asarray(multiplier, np.float64), shape),
                  keep & ~std, ci_level)
    for a in (num, den, val, lo, hi):
        a[suppressed] = np.nan
    return {"numerator": num, "denominator": den, "value": val, "lower": lo, "upper": hi, "suppressed": suppressed}


def _rederive(num, den, val, lo, hi, kinds, mult, rows, ci_level) -> None:
    """Values of proportions, crude rates and totals from the rounded counts, in place."""
    p = rows & np.isin(kinds, ("proportion", "ratio"))
    if p.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            val[p] = num[p] / den[p] * mult[p]
        w_lo, w_hi = stats.wilson(num[p], den[p], ci_level)
        lo[p], hi[p] = w_lo * mult[p], w_hi * mult[p]
    r = rows & (kinds == "rate")
    if r.any():
        val[r], lo[r], hi[r] = stats.rate_ci(num[r], den[r], mult[r], ci_level)
    t = rows & (kinds == "total")
    val[t] = num[t] * mult[t]


def apply_table(table, policy: DisclosurePolicy | None = None, ci_level: float = 0.95):
    """``apply`` over a pyarrow Table of KPI results (columns level, numerator, denominator,
    value, lower, upper; kind, multiplier, standardised and suppressed used when present).

    Returns the table with those columns replaced (NaN as null) and ``suppressed`` set; rows
    that came in already flagged as suppressed are nulled too.
    """
    import pyarrow as pa  # the table API only; the array API needs numpy alone

    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"disclosure control needs the columns {', '.join(missing)}")

    def floats(name):
        return np.asarray(table.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False), np.float64)

    def optional(name):
        return table.column(name).to_pylist() if name in table.column_names else None

    std = optional("standardised")
    out = apply(*(floats(c) for c in ("numerator", "denominator", "value", "lower", "upper")),
                table.column("level").to_pylist(), policy,
                kind=optional("kind"), multiplier=floats("multiplier") if "multiplier" in table.column_names else None,
                standardised=None if std is None else [bool(x) for x in std], ci_level=ci_level)
    before = optional("suppressed")
    if before is not None:
        out["suppressed"] = out["suppressed"] | np.array([bool(x) for x in before], bool)
        for name in ("numerator", "denominator", "value", "lower", "upper"):
            out[name][out["suppressed"]] = np.nan
    for name in ("numerator", "denominator", "value", "lower", "upper", "suppressed"):
        if name in table.column_names:
            i = table.column_names.index(name)
            table = table.set_column(i, table.schema.field(i), pa.array(out[name], table.schema.field(i).type,
                                                                           from_pandas=True))
        else:
            table = table.append_column(name, pa.array(out[name], pa.bool_()))
    return table
