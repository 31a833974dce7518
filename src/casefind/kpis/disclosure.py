"""Statistical disclosure control of KPI results: a policy applied after computation and roll-up.

Control comes last, never before roll-up: localities and the system are sums of their
practices' exact counts, and suppressing or rounding first would bias every total.

The defaults follow NHS Digital's "Disclosure control methodology for Hospital Episode
Statistics (HES) and Emergency Care Data Set (ECDS)" (digital.nhs.uk, in use from September
2018 and since adopted for other NHS Digital data such as SRHAD and the DQMI): below national
level, counts of 1 to 7 are replaced by '*' and every other count is rounded to the nearest 5
(0 is published as 0); "where the number of values used is between 1 and 7 inclusive, no
calculation is made" for a mean or median; percentages are worked out from the rounded
numerator and denominator. Rounding, not secondary suppression, is what stops a suppressed
cell being worked out by subtracting its neighbours from a total, so keep ``round_to`` above
1 where cells are suppressed. ``suppress_below=8`` is that 1-7 rule. Every level casefind
reports (practice, locality, system, provider, service) is below national level, so all are
controlled by default; leave one out of ``apply_to_levels`` only for figures that stay
inside the organisation.

Every published figure comes from the rounded counts, for every kind, because an exact value
next to a rounded count gives the exact count back (numerator / value), and exact counts of a
parent and its other children give a suppressed child's small count by difference:

* proportion, ratio: count / count from the rounded counts, Wilson limits from them (HES);
* crude rate: rounded count / rounded people, exact-Poisson/Byar limits from them;
* total: the rounded count;
* mean, per head: HES gives the mean "calculated" from exact data once 8 or more values are
  used; casefind is stricter, as an exact mean of whole numbers (days, scores) is a fraction
  whose denominator is the exact count. The sum of the values is tested like a count (a
  per-head count of contacts has a count for its sum) and rounded like one, the sum of squares
  too, and the mean and its normal-approximation limits are worked out from the rounded sums
  and the rounded number of values;
* median: not given from 1 to 7 values (HES); otherwise given as computed, since a median is
  one of the values (or halfway between two), not a function of their number;
* directly standardised rate: HES says "for complex calculations such as standardised rates,
  confidence intervals and regression models, no disclosure control is required", but
  Dobson's limits are DSR + s(O_limit - O), and the shape of (upper - DSR) / (DSR - lower)
  gives the exact count O. So the DSR and its limits are those of the age bands scaled to the
  published totals (counts by rounded/exact count, populations by rounded/exact people):
  DSR x (O_r / O) x (n / n_r), with Dobson's spread x (n / n_r) and the Poisson limits of
  O_r. Fewer than 10 events give no DSR (kpis/stats.py), so a small count never gives one.

The unrounded figures are kept beside the published ones (``exact_*``), for the analyst's
history and for classification only; history.export never writes them.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import numpy as np

from casefind.kpis import stats

LEVELS = ("practice", "locality", "system", "provider", "service")  # all below national level
COUNT_KINDS = ("proportion", "rate", "total", "ratio")  # kinds whose numerator is a count of people or events
SUM_KINDS = ("mean", "per_head")  # numerator: a sum of values (money, days, scores, contacts)
FIGURES = ("numerator", "denominator", "value", "lower", "upper")
EXACT_COLUMNS = tuple(f"exact_{c}" for c in FIGURES)
REQUIRED_COLUMNS = ("level", *FIGURES)
RULE = ("NHS Digital, Disclosure control methodology for HES and ECDS (2018): below national level, "
        "counts of 1-7 suppressed, other counts rounded to the nearest 5, figures derived from the rounded counts")


@dataclass(frozen=True)
class DisclosurePolicy:
    """What to suppress and round, and at which levels of the hierarchy.

    suppress_below: counts from 1 to suppress_below − 1 are suppressed (8: HES's 1-7 rule;
        0 or 1 suppresses nothing).
    round_to: published counts are rounded to the nearest multiple (halves up); 0 or 1 keeps them.
    apply_to_levels: the levels controlled (by default all: each is below national level);
        others are published as computed, as HES publishes national figures.
    suppress_zero: also suppress counts of 0 (for measures where "none" is itself disclosive).
    derive_from_rounded: work every value and interval out again from the rounded counts;
        otherwise an exact value gives the unrounded counts back.
    """

    suppress_below: int = 8
    round_to: int = 5
    apply_to_levels: tuple[str, ...] = LEVELS
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

    def as_dict(self) -> dict:
        """The policy as plain JSON-able values (for the run log and the pack)."""
        out = asdict(self)
        out["apply_to_levels"] = list(self.apply_to_levels)
        return out

    def weaker_than_default(self) -> list[str]:
        """How this policy falls short of the default (HES/ECDS), one phrase each; empty if not."""
        hes, out = DisclosurePolicy(), []
        if self.suppress_below < hes.suppress_below:
            out.append(f"counts from {max(self.suppress_below, 1)} to 7 are published "
                       f"(suppress_below {self.suppress_below}; HES: {hes.suppress_below})")
        if self.round_to < hes.round_to:
            out.append(f"counts are rounded to {max(self.round_to, 1)}, not 5 (round_to {self.round_to})")
        missing = [lv for lv in hes.apply_to_levels if lv not in self.apply_to_levels]
        if missing:
            out.append(f"the {', '.join(missing)} level{'s are' if len(missing) > 1 else ' is'} not controlled")
        if not self.derive_from_rounded:
            out.append("values and intervals come from the unrounded counts (derive_from_rounded false)")
        return out

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
    """Suppress and round KPI cells: arrays in, arrays out (with a boolean ``suppressed`` and
    the unrounded figures as ``exact_numerator`` … ``exact_upper``).

    A controlled cell (its ``level`` in ``apply_to_levels``) is suppressed when its
    denominator or, except for a median (which has none), its numerator is small; all five
    numbers of a suppressed cell become NaN. Other controlled cells have both counts rounded.

    ``kind`` (per cell, or None: every numerator a count) and ``multiplier`` say how each
    value is worked out again from the rounded counts (module docstring), with intervals at
    ``ci_level``; ``standardised`` marks DSRs. Without them values are passed through.
    """
    policy = policy or DisclosurePolicy()
    exact = [np.array(x, dtype=np.float64) for x in np.broadcast_arrays(
        *(np.asarray(x, dtype=np.float64) for x in (numerator, denominator, value, lower, upper)))]
    num, den, val, lo, hi = (x.copy() for x in exact)
    shape = num.shape
    controlled = np.isin(_as_strings(level, shape), policy.apply_to_levels)
    kinds = None if kind is None else _as_strings(kind, shape)
    tested = np.ones(shape, bool) if kinds is None else kinds != "median"
    suppressed = controlled & (_small(den, policy) | (tested & _small(num, policy)))
    keep = controlled & ~suppressed
    num = np.where(keep, _round(num, policy.round_to), num)
    den = np.where(keep, _round(den, policy.round_to), den)
    if kinds is not None and multiplier is not None and policy.derive_from_rounded and policy.round_to > 1:
        std = np.zeros(shape, bool) if standardised is None else np.broadcast_to(np.asarray(standardised, bool), shape)
        mult = np.broadcast_to(np.asarray(multiplier, np.float64), shape)
        _rederive((num, den, val, lo, hi), exact, kinds, mult, std, keep, policy.round_to, ci_level)
    for a in (num, den, val, lo, hi):
        a[suppressed] = np.nan
    out = dict(zip(FIGURES, (num, den, val, lo, hi)))
    out["suppressed"] = suppressed
    out.update(zip(EXACT_COLUMNS, exact))
    return out


def _rederive(published, exact, kinds, mult, std, rows, step: int, ci_level: float) -> None:
    """Every kind's value and limits from the rounded counts, in place (module docstring)."""
    num, den, val, lo, hi = published
    with np.errstate(divide="ignore", invalid="ignore"):
        p = rows & np.isin(kinds, ("proportion", "ratio"))
        if p.any():
            val[p] = num[p] / den[p] * mult[p]
            w_lo, w_hi = stats.wilson(np.minimum(num[p], den[p]), den[p], ci_level)
            lo[p], hi[p] = w_lo * mult[p], w_hi * mult[p]
        r = rows & (kinds == "rate") & ~std
        if r.any():
            val[r], lo[r], hi[r] = stats.rate_ci(num[r], den[r], mult[r], ci_level)
        t = rows & (kinds == "total")
        val[t] = num[t] * mult[t]
        m = rows & np.isin(kinds, SUM_KINDS)
        if m.any():
            _means(published, exact, m, mult, step, ci_level)
        d = rows & (kinds == "rate") & std
        if d.any():
            _standardised(published, exact, d, ci_level)


def _means(published, exact, rows, mult, step: int, ci_level: float) -> None:
    """A mean (or per-head amount) from the rounded sum, sum of squares and count.

    The sum of squares is not in the results: it comes back from the exact normal-
    approximation limits (half-width z·√(var/count), var = (ss/count − mean²)·count/(count − 1)).
    """
    num, den, val, lo, hi = published
    e_num, e_den, _, e_lo, e_hi = (x[rows] for x in exact)
    z, k = stats.z_value(ci_level), mult[rows]
    var = ((e_hi - e_lo) / 2 / k / z) ** 2 * e_den
    ss = _round(var * np.maximum(e_den - 1, 1) + e_num ** 2 / e_den, step)
    count = den[rows]
    mean = num[rows] / count
    var_r = np.maximum(ss / count - mean ** 2, 0) * count / np.maximum(count - 1, 1)
    half = z * np.sqrt(var_r / count)
    val[rows], lo[rows], hi[rows] = mean * k, (mean - half) * k, (mean + half) * k


def _standardised(published, exact, rows, ci_level: float) -> None:
    """A DSR and its Dobson limits for the age bands scaled to the published totals: counts
    by O_r / O and populations by n_r / n, so no figure depends on the exact O or n."""
    num, den, val, lo, hi = published
    o, n, dsr, _, e_hi = (x[rows] for x in exact)
    o_r, n_r = num[rows], den[rows]
    _, o_hi = stats.poisson_limits(o, ci_level)
    spread = (e_hi - dsr) / (o_hi - o) * (n / n_r)  # Dobson's √(var/O), for the scaled populations
    value = dsr * (o_r / o) * (n / n_r)
    r_lo, r_hi = stats.poisson_limits(o_r, ci_level)
    shown = np.isfinite(dsr) & (o_r >= stats.DSR_MIN_COUNT)
    val[rows] = np.where(shown, value, np.nan)
    lo[rows] = np.where(shown, value + spread * (r_lo - o_r), np.nan)
    hi[rows] = np.where(shown, value + spread * (r_hi - o_r), np.nan)


def apply_table(table, policy: DisclosurePolicy | None = None, ci_level: float = 0.95):
    """``apply`` over a pyarrow Table of KPI results (columns level, numerator, denominator,
    value, lower, upper; kind, multiplier, standardised and suppressed used when present).

    Returns the table with those columns replaced (NaN as null), ``suppressed`` set, and the
    unrounded figures in ``exact_*`` columns (appended, or replaced when present); rows that
    came in already flagged as suppressed are nulled too.
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
    out = apply(*(floats(c) for c in FIGURES), table.column("level").to_pylist(), policy,
                kind=optional("kind"), multiplier=floats("multiplier") if "multiplier" in table.column_names else None,
                standardised=None if std is None else [bool(x) for x in std], ci_level=ci_level)
    before = optional("suppressed")
    if before is not None:
        out["suppressed"] = out["suppressed"] | np.array([bool(x) for x in before], bool)
        for name in FIGURES:
            out[name][out["suppressed"]] = np.nan
    for name in (*FIGURES, "suppressed", *EXACT_COLUMNS):
        kind = pa.bool_() if name == "suppressed" else pa.float64()
        column = pa.array(out[name], kind, from_pandas=True)
        if name in table.column_names:
            i = table.column_names.index(name)
            table = table.set_column(i, table.schema.field(i), column.cast(table.schema.field(i).type))
        else:
            table = table.append_column(pa.field(name, kind), column)
    return table
