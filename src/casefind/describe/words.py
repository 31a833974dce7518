"""Plain English for every node of the rules IR, one method per node class.

``Words(names).of(node)`` dispatches on the node's class, as sqlglot's generator does: a
``Count`` is worded by ``count_words``, a ``Ge`` by ``ge_words``. There is no fallback to a
parent class, so a node class added to casefind.rules.ir without a method here fails
(``UnwordedNode``) and so does the test that walks every class rules can produce. Features
and parameters are named rather than spelled out again (``names``: node -> feature name), so
a criterion reads "`efi` is more than 0.24" and the feature's own definition says what
`efi` is. Names are written in backticks (Markdown inline code); the HTML page shows them
as code.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from casefind.errors import CasefindError
from casefind.rules import ir

AS_OF = "the list date"
SETTING_NOUNS: dict[str, tuple[str, str]] = {
    "gp": ("GP appointment", "GP appointments"), "ae": ("A&E attendance", "A&E attendances"),
    "emergency_admission": ("emergency admission", "emergency admissions"),
    "elective_admission": ("elective admission", "elective admissions"),
    "outpatient": ("outpatient attendance", "outpatient attendances"),
    "community": ("community contact", "community contacts"),
    "mental_health": ("mental health contact", "mental health contacts"),
    "social_care": ("social care contact", "social care contacts"),
    "ambulance": ("ambulance call-out", "ambulance call-outs"),
    "out_of_hours": ("out-of-hours contact", "out-of-hours contacts"),
    "care_home": ("care home stay", "care home stays"),
}
TABLE_NOUNS: dict[str, tuple[str, str]] = {
    "activity": ("activity record", "activity records (contacts, attendances and hospital spells)"),
    "diagnoses": ("diagnosis", "diagnoses"), "medications": ("medicine issue", "medicine issues"),
    "observations": ("observation", "observations"), "registers": ("register entry", "register entries"),
    "procedures": ("hospital procedure", "hospital procedures"),
    "experience": ("patient-reported measure", "patient-reported measures"), "opt_outs": ("opt-out", "opt-outs"),
}
ATTRIBUTE_WORDS: dict[str, str] = {
    "age": "age (whole years)", "sex": "sex", "practice": "GP practice", "locality": "locality",
    "system": "system (ICB or place)", "imd_decile": "deprivation decile (IMD, 1 most deprived)",
    "birth_date": "date of birth", "death_date": "date of death",
    "registered": f"registered with a GP practice on {AS_OF}", "alive": f"alive on {AS_OF}",
    "registration_start": "registration start date", "registration_end": "registration end date",
}
# comparison -> (numbers, dates, a count "k or more ...", age "aged ...")
_COMPARE: dict[type, tuple[str, str, str, str]] = {
    ir.Ge: ("is at least", "is on or after", "{k} or more", "aged {k} or over"),
    ir.Gt: ("is more than", "is after", "more than {k}", "older than {k}"),
    ir.Le: ("is at most", "is on or before", "at most {k}", "aged {k} or under"),
    ir.Lt: ("is less than", "is before", "fewer than {k}", "younger than {k}"),
    ir.Eq: ("is", "is", "exactly {k}", "aged {k}"),
    ir.Ne: ("is not", "is not", "other than {k}", "not aged {k}"),
}
_ARITHMETIC = {ir.Add: "plus", ir.Sub: "minus", ir.Mul: "times", ir.Div: "divided by"}


class UnwordedNode(CasefindError):
    """A node class with no ``<classname>_words`` method: a bug in casefind (the IR grew a
    class this module does not word yet), never a user's mistake; the one error base still
    gives the CLI one line to print, with a hint to report it."""


def method_name(cls: type) -> str:
    return f"{cls.__name__.lower()}_words"


def number(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10_000 else str(v)
    if isinstance(v, float):
        return f"{v:g}" if abs(v) < 1e15 else f"{v:,.0f}"
    if isinstance(v, dt.date):
        return v.strftime("%d %b %Y").lstrip("0")
    return f"“{v}”" if isinstance(v, str) else str(v)


def months_days(offset: tuple[int, int]) -> str:
    m, d = offset
    parts = ([f"{m} month{'s' if m != 1 else ''}"] if m else []) + ([f"{d} day{'s' if d != 1 else ''}"] if d else [])
    return " and ".join(parts) or "0 days"


def window_words(w: ir.Window) -> str:
    """When the rows an aggregation sees are dated, counted back from the evaluation date."""
    if isinstance(w, ir.Ever):
        return f"at any time up to {AS_OF}"
    if isinstance(w, ir.Active):
        return f"active on {AS_OF} (started by then and not ended before it)"
    if isinstance(w, ir.Range):
        if w.end == (0, 0):
            return f"in the {months_days(w.start)} before {AS_OF}"
        return f"from {months_days(w.start)} to {months_days(w.end)} before {AS_OF}"
    raise UnwordedNode(f"no words for the window {type(w).__name__}", "a bug in casefind describe: please report it")


class Words:
    """English for IR nodes; ``names`` names features (and the nodes they stand for)."""

    def __init__(self, names: dict[ir.Node, str] | None = None):
        plain = (ir.Const, ir.Param, ir.AsOf, ir.Attr)  # a feature that is just one of these reads as itself
        self.names = {n: k for n, k in (names or {}).items() if not isinstance(n, plain)}

    def of(self, n: ir.Node, top: bool = False) -> str:
        """``n`` in words; ``top``: spell it out even when it is a named feature."""
        if not top and n in self.names:
            return f"`{self.names[n]}`"
        method: Callable[[ir.Node], str] | None = getattr(self, method_name(type(n)), None)
        if method is None:
            raise UnwordedNode(f"no words for the IR node {type(n).__name__} (add {method_name(type(n))})",
                               "a bug in casefind describe: please report it")
        return method(n)

    def _sub(self, n: ir.Node) -> str:
        """An operand: bracketed when it joins parts with words of its own (and, or, plus)."""
        text = self.of(n)
        if n not in self.names and isinstance(n, (ir.Logical, ir.Arithmetic, ir.Case)):
            return f"({text})"
        return text

    # --- values ---------------------------------------------------------------------------
    def const_words(self, n: ir.Const) -> str:
        return number(n.value)

    def param_words(self, n: ir.Param) -> str:
        return f"`{n.name}` ({number(n.value)})"

    def asof_words(self, n: ir.AsOf) -> str:
        return AS_OF

    def attr_words(self, n: ir.Attr) -> str:
        return ATTRIBUTE_WORDS[n.name]

    def shift_words(self, n: ir.Shift) -> str:
        forward = n.months > 0 or (n.months == 0 and n.days > 0)
        amount = months_days((abs(n.months), abs(n.days)))
        return f"{amount} {'after' if forward else 'before'} {self.of(n.date)}"

    def column_words(self, n: ir.Column) -> str:
        return n.column.replace("_", " ")

    def incodelist_words(self, n: ir.InCodelist) -> str:
        return f"coded in codelist `{n.codelist.name}`"

    def categoryof_words(self, n: ir.CategoryOf) -> str:
        return f"categories of codelist `{n.codelist.name}`"

    def weightof_words(self, n: ir.WeightOf) -> str:
        return f"weight in codelist `{n.codelist.name}`"

    def spellhas_words(self, n: ir.SpellHas) -> str:
        found = self.rows(n.table, n.where)
        return f"belonging to a hospital spell that has {found}"

    # --- operators ------------------------------------------------------------------------
    def _chain(self, n: ir.Logical) -> str:
        kind = type(n)
        parts: list[ir.Node] = []
        stack = [n.right, n.left]  # the node itself is opened even when it is a named feature
        while stack:
            x = stack.pop()
            if type(x) is kind and x not in self.names:
                stack += [x.right, x.left]
            else:
                parts.append(x)
        texts = [self._sub(p) for p in parts]
        return ", ".join(texts[:-1]) + f" {n.op} " + texts[-1]

    def and_words(self, n: ir.And) -> str:
        return self._chain(n)

    def or_words(self, n: ir.Or) -> str:
        return self._chain(n)

    def _compare(self, n: ir.Comparison) -> str:
        numbers, dates, counted, aged = _COMPARE[type(n)]
        left, right = n.left, n.right
        fixed = isinstance(right, (ir.Const, ir.Param))
        if fixed and isinstance(left, ir.Count) and left not in self.names:
            return f"{counted.format(k=self.of(right))} {self.rows(left.table, left.where, left.window)}"
        if fixed and isinstance(left, ir.Attr) and left.name == "age":
            return aged.format(k=self.of(right))
        if isinstance(right, ir.Const) and right.type is ir.T.BOOL and type(n) in (ir.Eq, ir.Ne):
            yes = right.value == (type(n) is ir.Eq)
            return self.of(left) if yes else f"not {self._sub(left)}"
        verb = dates if left.type is ir.T.DATE else numbers
        return f"{self._sub(left)} {verb} {self._sub(right)}"

    eq_words = ne_words = lt_words = le_words = gt_words = ge_words = _compare

    def _arithmetic(self, n: ir.Arithmetic) -> str:
        counted = self._count_of_true(n)
        if counted is not None:
            return counted
        same_level = {ir.Add: (ir.Add, ir.Sub), ir.Sub: (ir.Add, ir.Sub), ir.Mul: (ir.Mul, ir.Div),
                      ir.Div: (ir.Mul, ir.Div)}[type(n)]
        left = self.of(n.left) if type(n.left) in same_level else self._sub(n.left)  # read left to right
        return f"{left} {_ARITHMETIC[type(n)]} {self._sub(n.right)}"

    add_words = sub_words = mul_words = div_words = _arithmetic

    def _count_of_true(self, n: ir.Node) -> str | None:
        """``case(a, 1, 0) + case(b, 1, 0) + ...`` (three or more): how many are true."""
        if not isinstance(n, ir.Add):
            return None
        terms, stack = [], [n.right, n.left]
        while stack:
            x = stack.pop()
            if isinstance(x, ir.Add) and x not in self.names:
                stack += [x.right, x.left]
            else:
                terms.append(x)
        flags = [_flag_of(t) for t in terms]
        if len(terms) < 3 or any(f is None for f in flags):
            return None
        return f"how many of these {len(flags)} are true: " + ", ".join(self.of(f) for f in flags)

    def not_words(self, n: ir.Not) -> str:
        return f"not ({self.of(n.operand)})"

    def neg_words(self, n: ir.Neg) -> str:
        return f"minus {self._sub(n.operand)}"

    def isin_words(self, n: ir.IsIn) -> str:
        values = [number(o.value) for o in n.options]
        shown = ", ".join(values[:10]) + (f" and {len(values) - 10:,} more" if len(values) > 10 else "")
        return f"{self._sub(n.operand)} is one of {shown}"

    def case_words(self, n: ir.Case) -> str:
        if len(n.whens) == 1 and n.default is not None:
            (cond, value), = n.whens
            if isinstance(cond, ir.Eq) and cond.left == value and cond.right == value:  # x == x: x is present
                return f"{self._sub(value)} (or {self.of(n.default)} when it is missing)"
        parts = [f"if {self.of(cond)}, {self.of(value)}" for cond, value in n.whens]
        otherwise = self.of(n.default) if n.default is not None else "missing"
        return "; else ".join(parts) + f"; otherwise {otherwise}"

    # --- functions ------------------------------------------------------------------------
    def _args(self, n: ir.Func) -> list[str]:
        return [self._sub(a) for a in n.args]

    def logistic_words(self, n: ir.Logistic) -> str:
        return f"the logistic function (1 / (1 + e^−x)) of {self._args(n)[0]}"

    def exp_words(self, n: ir.Exp) -> str:
        return f"e to the power of {self._args(n)[0]}"

    def log_words(self, n: ir.Log) -> str:
        return f"the natural logarithm of {self._args(n)[0]}"

    def abs_words(self, n: ir.Abs) -> str:
        return f"the absolute value of {self._args(n)[0]}"

    def round_words(self, n: ir.Round) -> str:
        return f"{self._args(n)[0]} rounded to a whole number"

    def least_words(self, n: ir.Least) -> str:
        return "the smallest of " + _listed(self._args(n), "and")

    def greatest_words(self, n: ir.Greatest) -> str:
        return "the largest of " + _listed(self._args(n), "and")

    def daysbetween_words(self, n: ir.DaysBetween) -> str:
        a, b = self._args(n)
        return f"the days from {a} to {b}"

    def weekday_words(self, n: ir.Weekday) -> str:
        return f"the day of the week of {self._args(n)[0]} (1 Monday to 7 Sunday)"

    # --- aggregations ---------------------------------------------------------------------
    def rows(self, table: str, where: ir.Node | None, window: ir.Window | None = None, one: bool = False) -> str:
        """The rows an aggregation reads, as a noun phrase (``one``: in the singular):
        "emergency admissions in the 12 months before the list date", "diagnoses coded in
        codelist `efi`"."""
        noun, rest = self._noun(table, ir.conjuncts(where), 0 if one else 1)
        for part in rest:
            noun += f" {self.of(part)}" if isinstance(part, (ir.InCodelist, ir.SpellHas)) else ""
        others = [p for p in rest if not isinstance(p, (ir.InCodelist, ir.SpellHas))]
        if others:
            noun += " where " + _listed([self._sub(p) for p in others], "and")
        if window is None:
            return noun
        return f"{noun}{',' if others else ''} {window_words(window)}"

    def _noun(self, table: str, parts: list[ir.Node], plural: int = 1) -> tuple[str, list[ir.Node]]:
        """A noun for the rows, from the filter parts that name what they are (a setting, a
        register, a clinician's decision), and the parts left to word."""
        for i, p in enumerate(parts):
            values = _fixed_values(p, table, "setting" if table == "activity" else "register")
            if values and table == "activity" and all(v in SETTING_NOUNS for v in values):
                return _listed([SETTING_NOUNS[v][plural] for v in values], "or"), parts[:i] + parts[i + 1:]
            if values and table == "registers":
                names = _listed([v.replace("_", " ") for v in values], "or")
                return f"{('entry', 'entries')[plural]} on the {names} register", parts[:i] + parts[i + 1:]
        if table == "reviews":
            return self._decisions(parts, plural)
        return TABLE_NOUNS.get(table, (f"{table} row", f"{table} rows"))[plural], parts

    def _decisions(self, parts: list[ir.Node], plural: int) -> tuple[str, list[ir.Node]]:
        """What ``reviewed(...)`` compiles to: decisions (not listings) on one rule's lists."""
        noun, rest = ("a decision a clinician recorded", "decisions clinicians recorded")[plural], []
        for p in parts:
            if _fixed_values(p, "reviews", "decision", ir.Ne) == ("listed",):
                continue
            rule = _fixed_values(p, "reviews", "rule")
            if rule:
                noun += f" on the {_listed(list(rule), 'or')} list{'s' if len(rule) > 1 else ''}"
                continue
            decided = _fixed_values(p, "reviews", "decision")
            if decided:
                noun += f" ({_listed([v.replace('_', ' ') for v in decided], 'or')})"
                continue
            rest.append(p)
        return noun, rest

    def _of_rows(self, what: str, n: ir.Aggregate, one: bool = False) -> str:
        return f"{what} {self.rows(n.table, n.where, n.window, one)}"

    def _value(self, n: ir.Aggregate) -> str:
        return self.of(n.value) if n.value is not None else "value"

    def exists_words(self, n: ir.Exists) -> str:
        if n.table == "registers" and isinstance(n.window, ir.Active):
            noun, rest = self._noun(n.table, ir.conjuncts(n.where), 0)
            if noun.startswith("entry on the ") and not rest:
                return f"on the {noun.removeprefix('entry on the ')} on {AS_OF}"
        found = self.rows(n.table, n.where, n.window, one=True)
        article = "" if found.startswith("a ") else "an " if found[:1] in "aeiouAEIO" else "a "
        return f"has {article}{found}"

    def count_words(self, n: ir.Count) -> str:
        return self._of_rows("the number of", n)

    def countdistinct_words(self, n: ir.CountDistinct) -> str:
        value = self._value(n) + ("s" if isinstance(n.value, ir.Column) else "")
        return self._of_rows(f"the number of different {value} among", n)

    def sum_words(self, n: ir.Sum) -> str:
        return self._of_rows(f"the total {self._value(n)} of", n)

    def mean_words(self, n: ir.Mean) -> str:
        return self._of_rows(f"the mean {self._value(n)} of", n)

    def median_words(self, n: ir.Median) -> str:
        return self._of_rows(f"the median {self._value(n)} of", n)

    def min_words(self, n: ir.Min) -> str:
        return self._of_rows(f"the smallest {self._value(n)} of", n)

    def max_words(self, n: ir.Max) -> str:
        return self._of_rows(f"the largest {self._value(n)} of", n)

    def first_words(self, n: ir.First) -> str:
        return self._of_rows(f"the {self._value(n)} of the earliest", n, one=True)

    def last_words(self, n: ir.Last) -> str:
        return self._of_rows(f"the {self._value(n)} of the latest", n, one=True)

    def dayssince_words(self, n: ir.DaysSince) -> str:
        return self._of_rows("the days since the latest", n, one=True)

    def weightedscore_words(self, n: ir.WeightedScore) -> str:
        name = n.codelist.name if n.codelist is not None else "?"
        text = self._of_rows(f"the sum of the weights in codelist `{name}` of each category found, "
                             "each category counted once, among", n)
        if n.hierarchy:
            pairs = _listed([f"{hi} over {lo}" for hi, lo in n.hierarchy], "and")
            text += f" (when both of a pair are found only the higher counts: {pairs})"
        return text

    def trend_words(self, n: ir.Trend) -> str:
        what = "number" if n.value is None else f"total {self.of(n.value)}"
        return (f"the trend (least-squares slope per month) of the monthly {what} of "
                f"{self.rows(n.table, n.where)}, over the last {n.months} whole months up to {AS_OF}")

    def at_words(self, n: ir.At) -> str:
        when = self.of(n.when)
        return f"{self._sub(n.operand)} as it was {'on ' if isinstance(n.when, ir.Const) else ''}{when}"

    def percentile_words(self, n: ir.Percentile) -> str:
        return f"the percentile (0-100) of {self._sub(n.operand)} within the rule's population"

    def top_words(self, n: ir.Top) -> str:
        return f"in the top {n.fraction * 100:g}% of the rule's population by {self._sub(n.operand)}"

    def rankinpool_words(self, n: ir.RankInPool) -> str:
        if n.kind == "percentile":
            return f"the percentile (0-100) of {self._sub(n.operand)} within the rule's whole population"
        return f"in the top {n.fraction * 100:g}% of the rule's whole population by {self._sub(n.operand)}"


def _listed(items: list[str], joiner: str) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {joiner} " + items[-1]


def _flag_of(n: ir.Node) -> ir.Node | None:
    """``a`` of ``case(a, 1, 0)``, else None."""
    if isinstance(n, ir.Case) and len(n.whens) == 1 and isinstance(n.default, ir.Const):
        value = n.whens[0][1]
        if isinstance(value, ir.Const) and value.value == 1 and n.default.value == 0:
            return n.whens[0][0]
    return None


def _fixed_values(n: ir.Node, table: str, column: str, op: type = ir.Eq) -> tuple[str, ...]:
    """The fixed texts ``n`` compares ``table.column`` with (``op``, or ``in``), else ()."""
    def is_column(x: ir.Node) -> bool:
        return isinstance(x, ir.Column) and x.table == table and x.column == column

    if type(n) is op and is_column(n.left) and isinstance(n.right, ir.Const) and isinstance(n.right.value, str):
        return (n.right.value,)
    if op is ir.Eq and isinstance(n, ir.IsIn) and is_column(n.operand):
        return tuple(str(o.value) for o in n.options)
    return ()
