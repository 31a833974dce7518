"""The reference engine: the IR as DuckDB SQL over the store, kept simple and obviously right.

It is a correctness oracle, not a way to run rules fast. It exists so that the semantics
have one executable statement that can be read line by line and checked against the rule
language's documentation; the native engine (and any engine added later) is tested against
it in the spec and property tests, and a run re-checks its listed patients with it. So it
is deliberately naive: a rule is ONE SQL query, written the most direct way, with no
optimisation — no fusing of aggregations, no plan, no caching, no cleverness that would
need its own proof. The store's encoded columns are decoded into plain views (dates,
text), every aggregation is its own grouped subquery, and every rule of the semantics is
written out where it applies. If making it faster would make it harder to see that it is
right, leave it slow; speed belongs in the native engine, which must match it.

The semantics:

- a comparison (or ``in``) with a missing value is false, never null; ``not`` of it is true;
- age is whole years at the evaluation date D (a 29 February birthday falls on 1 March);
  registered: start <= D and (no end or end >= D); alive: no death date or death after D;
- an aggregation sees rows dated on or before D, within its window:
  range (D - start, D - end] in calendar months and days (the day clamps to month end);
- over no rows: exists false, count and count_distinct 0, sum and scores 0, the others null;
- first/last take the earliest/latest row by date, ties by store order; sum/mean/median/min/max
  skip missing values;
- count_distinct of a codelist's categories counts each category once (a code in two
  categories counts for both); a weighted score adds each category's weight once (the
  largest weight among its codes, whichever of them the patient has) exactly, as whole
  10^-k units divided once by 10^k, leaving out a category when one above it in the
  score's hierarchy is present;
- trend: counts (or sums) in n monthly buckets (D - (i+1) months, D - i months], slope of a
  least-squares line per month; 0 when fewer than two buckets have any rows;
- percentile: 100 × (population members with a smaller value) / (members with a value);
  top(x, p): fewer than p × (members with a value) have a larger value. Missing values are
  never top and have no percentile, nor has anyone when no member has a value. Both rank
  within the rule's population;
- a result too large for its type is missing: whole-number arithmetic beyond 64 bits (done
  in 128 bits, then TRY_CAST back), a decimal result that is not finite, round() of a value
  beyond the whole numbers; log of zero or less is missing.

Values reach SQL as literals (``sql_literal``), never as pasted text; long ``in`` lists and
codelists are registered as tables and looked up, not written out.
"""
from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from typing import ClassVar

import duckdb
import numpy as np
import pyarrow as pa

from casefind.contract import EVENT_TABLES, TABLES
from casefind.contract.dates import NULL_DAY
from casefind.engines.base import Engine
from casefind.rules import ir
from casefind.store import Store

INLINE_UP_TO = 32  # values an `in` list or codelist writes into the SQL; more: a registered table


def sql_literal(value) -> str:
    """A Python value (bool, whole number, float, date, text) as a DuckDB SQL literal of the
    IR's type: never pasted text (quotes are doubled), a float always DOUBLE (a bare 7.1
    would be DECIMAL), inf/-inf/nan as DOUBLE strings, a date as ``DATE 'YYYY-MM-DD'``.
    For SQL that other modules (evidence) build over ``register_store``'s views."""
    if isinstance(value, (bool, np.bool_)):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):  # a bare 7.1 would be DECIMAL in DuckDB; the IR says double
        value = float(value)
        if not math.isfinite(value):
            return f"'{value}'::DOUBLE"  # 'inf', '-inf', 'nan'
        return f"CAST({value!r} AS DOUBLE)"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def _finite(sql: str) -> str:
    """A DOUBLE that is missing unless finite. ``x`` is evaluated once, inside a one-element
    list: DuckDB expands nullif/CASE into copies of their argument, so nesting those grows the
    plan exponentially (six levels took minutes); a list filter keeps it linear."""
    return f"list_extract(list_filter([CAST({sql} AS DOUBLE)], lambda v: isfinite(v)), 1)"


def _int64(sql: str) -> str:
    """A 128-bit whole number as BIGINT, missing when it does not fit."""
    return f"TRY_CAST({sql} AS BIGINT)"


_ARROW_TYPE = {ir.T.INT: pa.int64(), ir.T.FLOAT: pa.float64(), ir.T.DATE: pa.date32(), ir.T.BOOL: pa.bool_(),
               ir.T.TEXT: pa.string(), ir.T.CODE: pa.string()}


def _shift(date_sql: str, months: int, days: int) -> str:
    s = date_sql
    if months:
        s = f"({s} + INTERVAL ({months}) MONTH)"
    if days:
        s = f"({s} + INTERVAL ({days}) DAY)"
    return f"CAST({s} AS DATE)" if (months or days) else s


def _date_col(name: str, source: str | None = None) -> str:
    """A stored day number as a DATE column named ``name`` (the sentinel becomes NULL)."""
    src = source or name
    return f"CASE WHEN {src} = {int(NULL_DAY)} THEN NULL ELSE DATE '1970-01-01' + {src} END AS {name}"


def rows_of(offsets: np.ndarray, patients: np.ndarray) -> np.ndarray:
    """Row numbers of the given patients' rows (each patient's rows are contiguous)."""
    patients = np.asarray(patients, dtype=np.int64)
    starts, ends = offsets[patients], offsets[patients + 1]
    lengths = ends - starts
    if lengths.sum() == 0:
        return np.empty(0, dtype=np.int64)
    base = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return base + np.arange(lengths.sum(), dtype=np.int64)


def columns_read(nodes) -> dict[str, set[str]]:
    """Per event table that SQL over ``nodes`` reads, the columns it reads: those the nodes
    name, and those the SQL reads without their naming them: the date rows are sorted by
    (windows), the code system (codelists), the spell (``spell_has``, in the inner and the
    outer table) and an ``active`` window's start and end."""
    out: dict[str, set[str]] = {}
    spells = False
    for root in nodes:
        for n in ir.walk(root, into=(ir.ROWS, ir.DATE)):
            table = getattr(n, "table", None)
            if not (isinstance(table, str) and table in EVENT_TABLES):
                continue
            names = TABLES[table].names
            cols = out.setdefault(table, {TABLES[table].sort_date, *({"code_system"} & set(names))})
            if isinstance(n, ir.Column):
                cols.add(n.column)
            elif isinstance(n, ir.SpellHas):
                spells = True
            window = getattr(n, "window", None)
            if window is not None and window.kind == "active":
                cols.update({"start_date", "end_date"} & set(names))
    for table, cols in out.items():
        if spells and "spell_id" in TABLES[table].names:
            cols.add("spell_id")
    return out


def register_store(con: duckdb.DuckDBPyConnection, store: Store, only: np.ndarray | None = None,
                   columns: dict[str, set[str]] | None = None) -> None:
    """Decoded views of the store: one row per stored row, dates as DATE, codes as text.
    With ``only``, event tables hold just those patients' rows (a list's re-check and
    evidence need nothing else), which keeps the reference engine fast at any size. With
    ``columns`` too (``columns_read``), only those tables and columns are taken: a few
    thousand patients' rows touch pages all over a mapped column, so taking every column
    mapped most of the store (1.6 GB at 1M for a list's 3,099 patients). SQL that reads
    anything else fails loudly (no such table or column), never with a silent NULL."""
    for name, d in store.manifest["dictionaries"].items():
        if name == "spell":  # rules compare spell numbers; the source ids are never joined
            continue
        con.register(f"dict_{name.replace('.', '_')}",
                     pa.table({"idx": pa.array(np.arange(d["size"], dtype=np.int32)),
                               "value": pa.array(store.dictionary(name).tolist(), pa.string())}))
    practices = store.table("practices").arrow
    con.register("raw_practices", practices)
    pt = store.table("patients")
    con.register("raw_patients", pt.arrow)
    enc = pt.encodings
    sex_cases = " ".join(f"WHEN {i} THEN {sql_literal(v)}" for i, v in enumerate(enc["sex"]["values"]))
    con.execute(f"""
        CREATE OR REPLACE VIEW patients AS
        SELECT p.patient, p.patient_id,
               {_date_col('birth_date')}, {_date_col('registration_start')},
               {_date_col('registration_end')}, {_date_col('death_date')},
               CASE p.sex {sex_cases} END AS sex,
               CASE WHEN p.imd_decile = 0 THEN NULL ELSE p.imd_decile END AS imd_decile,
               pr.practice_code AS practice, pr.locality_code AS locality, pr.system_code AS system
        FROM (SELECT (row_number() OVER () - 1)::INTEGER AS patient, * FROM raw_patients) p
        JOIN (SELECT (row_number() OVER () - 1)::INTEGER AS i, * FROM raw_practices) pr ON pr.i = p.practice
    """)
    narrow = columns if only is not None else None  # columns apply to some patients' rows only
    for name in EVENT_TABLES:
        if narrow is not None and name not in narrow:
            continue
        t = store.table(name)
        if only is None:
            con.register(f"raw_{name}", t.arrow)
            cols = ["(row_number() OVER () - 1)::BIGINT AS row", "e.patient"]
        else:  # their rows, each with its row number in the store as a column: row_number()
            # OVER () would keep DuckDB from filtering the view before decoding all of it
            rows = rows_of(t.offsets, np.sort(only))
            taken = t.arrow if narrow is None else t.arrow.select(["patient", *sorted(narrow[name])])
            con.register(f"raw_{name}", taken.take(pa.array(rows)).append_column("row", pa.array(rows)))
            cols = ["e.row", "e.patient"]
        joins = []
        for c in TABLES[name].columns:
            if c.kind == "patient_id" or (narrow is not None and c.name not in narrow[name]):
                continue
            e = t.encodings[c.name]
            if c.kind == "date":
                cols.append(_date_col(c.name, f"e.{c.name}"))
            elif c.kind == "enum":
                cases = " ".join(f"WHEN {i} THEN {sql_literal(v)}" for i, v in enumerate(e["values"]))
                cols.append(f"CASE e.{c.name} {cases} END AS {c.name}")
            elif c.kind == "text":
                alias = f"d_{c.name}"
                joins.append(f"LEFT JOIN dict_{e['dictionary'].replace('.', '_')} {alias} ON {alias}.idx = e.{c.name}")
                cols.append(f"{alias}.value AS {c.name}")
            elif c.kind == "code":
                systems = list(e["dictionaries"])
                parts = []
                for i, s in enumerate(systems):
                    dname = f"code.{s}"
                    if dname not in store.manifest["dictionaries"]:
                        continue
                    alias = f"c_{c.name}_{s}"
                    cond = f"e.{e['system_column']} = {i} AND " if e["system_column"] else ""
                    joins.append(f"LEFT JOIN dict_code_{s} {alias} ON {cond}{alias}.idx = e.{c.name}")
                    parts.append(f"{alias}.value")
                cols.append(f"COALESCE({', '.join(parts)}) AS {c.name}" if parts else f"NULL::VARCHAR AS {c.name}")
            elif c.kind == "float":
                cols.append(f"CASE WHEN isnan(e.{c.name}) THEN NULL ELSE e.{c.name} END AS {c.name}")
            else:  # int and spell: 0 is missing
                cols.append(f"NULLIF(e.{c.name}, 0) AS {c.name}")
        con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT {', '.join(cols)} "
                    f"FROM (SELECT * FROM raw_{name}) e {' '.join(joins)}")


@dataclass
class _Query:
    """Collects one grouped subquery per (aggregation, evaluation date), and the lookup
    tables of long ``in`` lists and codelists (registered on the connection)."""

    ctes: dict[tuple, str] = field(default_factory=dict)
    sql: list[str] = field(default_factory=list)
    lookups: dict[tuple, str] = field(default_factory=dict)  # (kind, key) -> registered table name
    joins: dict[str, list[str]] = field(default_factory=dict)  # alias -> subqueries joined to its patients
    aliases: int = 0  # patients aliases made for rank subqueries


class SqlCompiler:
    """IR → SQL expressions. Patient expressions refer to the ``patients`` view by ``alias``;
    subqueries (one per aggregation and date) are shared by every alias. With ``con``, long
    value lists become tables registered on it; without, they are written inline."""

    def __init__(self, population: ir.Node | None = None, alias: str = "p", query: _Query | None = None,
                 con: duckdb.DuckDBPyConnection | None = None):
        self.q = query or _Query()
        self.population = population
        self.a = alias
        self.con = con

    def with_alias(self, alias: str) -> SqlCompiler:
        return SqlCompiler(self.population, alias, self.q, self.con)

    def joined(self, name: str) -> str:
        """Subquery ``name`` (one row per patient) joined once to this alias's patients,
        however many times expressions use it: its alias there."""
        used = self.q.joins.setdefault(self.a, [])
        if name not in used:
            used.append(name)
        return f"{self.a}_{name}"

    def patients_from(self) -> str:
        """``patients {alias}`` with the subqueries its expressions use joined."""
        joins = "".join(f" LEFT JOIN {name} {self.a}_{name} ON {self.a}_{name}.patient = {self.a}.patient"
                        for name in self.q.joins.get(self.a, []))
        return f"patients {self.a}{joins}"

    def values_in(self, sql: str, values: tuple, t: ir.T) -> str:
        """``sql IN values`` (false, not null, when sql is missing): a lookup in a registered
        table for a long list, a literal list for a short one."""
        if not values:
            return "FALSE"
        if self.con is None or len(values) <= INLINE_UP_TO:
            return f"COALESCE({sql} IN ({', '.join(sql_literal(v) for v in values)}), FALSE)"
        key = ("in", t, values)
        if key not in self.q.lookups:
            name = f"lookup{len(self.q.lookups)}"
            kind = ir.T.FLOAT if t in ir.NUMERIC and any(isinstance(v, float) for v in values) else t
            self.con.register(name, pa.table({"v": pa.array(list(values), _ARROW_TYPE[kind])}))
            self.q.lookups[key] = name
        return f"COALESCE({sql} IN (SELECT v FROM {self.q.lookups[key]}), FALSE)"

    def with_clause(self) -> str:
        """``WITH ...`` defining every subquery the compiled expressions use ('' if none):
        what a query built from this compiler's expressions starts with."""
        ctes = ", ".join(f"{name} AS ({sql})" for name, sql in self.q.ctes.values())
        return f"WITH {ctes}" if ctes else ""

    def row_compiler(self) -> SqlCompiler:
        """A compiler for one aggregation's rows, with a patients alias of its own: a filter
        that reads per-patient values (an attribute, another aggregation: "the diagnoses of
        the latest admission") joins them to each row under that alias (see ``rows``)."""
        self.q.aliases += 1
        return self.with_alias(f"ev{self.q.aliases}")

    def rows(self, n: ir.Aggregate | ir.Trend) -> str:
        """The FROM of an aggregation's rows (``self`` is its row compiler): the event table,
        joined to the patients and the per-patient subqueries its filter or value uses."""
        joins = self.q.joins.get(self.a, [])
        uses_patient = joins or any(ir.contains(part, ir.Attr) for part in (n.where, n.value) if part is not None)
        if not uses_patient:
            return f"{n.table} e"
        subs = "".join(f" LEFT JOIN {name} {self.a}_{name} ON {self.a}_{name}.patient = {self.a}.patient"
                       for name in joins)
        return f"{n.table} e JOIN patients {self.a} ON {self.a}.patient = e.patient{subs}"

    # --- one method per IR class ----------------------------------------------------------
    # ``sql(n, d)`` calls ``<name>_sql(n, d)``, the name the IR class's in snake case, found
    # through its bases (every Comparison has comparison_sql); TRANSFORMS holds one-liners
    # and names another method where several classes share one (after sqlglot's generator).
    TRANSFORMS: ClassVar[dict[type, object]] = {
        ir.Param: "const_sql",
        ir.AsOf: lambda self, n, d: d,
        ir.Column: lambda self, n, d: f"e.{n.column}",
        ir.CategoryOf: lambda self, n, d: "cl.category",  # the codelist rows joined to each row
        ir.Shift: lambda self, n, d: _shift(self.sql(n.date, d), n.months, n.days),
        ir.At: lambda self, n, d: self.sql(n.operand, self.const_date(n.when, d)),
        ir.Not: lambda self, n, d: f"(NOT COALESCE({self.sql(n.operand, d)}, FALSE))",
        ir.IsIn: lambda self, n, d: self.values_in(self.sql(n.operand, d), tuple(o.value for o in n.options),
                                                   n.operand.type),
        ir.Logistic: lambda self, n, d: f"(1.0 / (1.0 + exp(-({self.sql(n.args[0], d)}))))",
        ir.DaysBetween: lambda self, n, d: f"date_diff('day', {self.sql(n.args[0], d)}, {self.sql(n.args[1], d)})",
        ir.Weekday: lambda self, n, d: f"CAST(isodow({self.sql(n.args[0], d)}) AS BIGINT)",
        ir.Least: lambda self, n, d: f"least({', '.join(self.sql(a, d) for a in n.args)})",
        ir.Greatest: lambda self, n, d: f"greatest({', '.join(self.sql(a, d) for a in n.args)})",
        ir.Log: lambda self, n, d: f"ln(nullif(greatest(CAST({self.sql(n.args[0], d)} AS DOUBLE), 0.0), 0.0))",
        ir.Round: lambda self, n, d: _int64(f"round({self.sql(n.args[0], d)})"),
        ir.Exp: lambda self, n, d: _finite(f"exp({self.sql(n.args[0], d)})"),
    }
    _methods: ClassVar[dict[tuple[type, type], object]] = {}  # (compiler class, IR class) -> how to write it

    def sql(self, n: ir.Node, d: str) -> str:
        """``n`` as SQL at the date (SQL) ``d``: per-patient values over this alias's patients,
        row values over the rows ``e`` of the aggregation this is the row compiler of."""
        key = (type(self), type(n))
        method = self._methods.get(key)
        if method is None:
            method = self._methods[key] = _method_for(type(self), type(n))
        return method(self, n, d)

    patient = event = sql  # the names evidence and older callers use

    def const_sql(self, n: ir.Const | ir.Param, d: str) -> str:
        return sql_literal(n.value) if n.value is not None else "NULL"

    def attr_sql(self, n: ir.Attr, d: str) -> str:
        a = self.a
        if n.name == "age":
            return (f"(year({d}) - year({a}.birth_date) - CASE WHEN month({d}) < month({a}.birth_date) OR "
                    f"(month({d}) = month({a}.birth_date) AND day({d}) < day({a}.birth_date)) THEN 1 ELSE 0 END)")
        if n.name == "registered":
            return (f"({a}.registration_start <= {d} AND "
                    f"({a}.registration_end IS NULL OR {a}.registration_end >= {d}))")
        if n.name == "alive":
            return f"({a}.death_date IS NULL OR {a}.death_date > {d})"
        return f"{a}.{n.name}"

    def const_date(self, n: ir.Node, d: str) -> str:
        if not isinstance(n, (ir.AsOf, ir.Shift, ir.Const, ir.Param)) or n.domain != ir.PATIENT:
            raise NotImplementedError("'at' needs a date that is the same for every patient")
        return self.sql(n, d)

    def logical_sql(self, n: ir.Logical, d: str) -> str:  # booleans are never missing: a missing one is false
        return f"(COALESCE({self.sql(n.left, d)}, FALSE) {n.op.upper()} COALESCE({self.sql(n.right, d)}, FALSE))"

    def comparison_sql(self, n: ir.Comparison, d: str) -> str:
        op = {"==": "=", "!=": "<>"}.get(n.op, n.op)
        return f"COALESCE({self.sql(n.left, d)} {op} {self.sql(n.right, d)}, FALSE)"

    def arithmetic_sql(self, n: ir.Arithmetic, d: str) -> str:
        left, right = self.sql(n.left, d), self.sql(n.right, d)
        if n.type is ir.T.INT:
            return _int64(f"(CAST({left} AS HUGEINT) {n.op} {right})")
        return _finite(f"({left} {n.op} {right})")

    def div_sql(self, n: ir.Div, d: str) -> str:
        return _finite(f"(CAST({self.sql(n.left, d)} AS DOUBLE) / NULLIF(CAST({self.sql(n.right, d)} AS DOUBLE), 0))")

    def neg_sql(self, n: ir.Neg, d: str) -> str:
        if n.type is ir.T.INT:
            return _int64(f"(-CAST({self.sql(n.operand, d)} AS HUGEINT))")
        return f"(-{self.sql(n.operand, d)})"

    def abs_sql(self, n: ir.Abs, d: str) -> str:
        if n.type is ir.T.INT:
            return _int64(f"abs(CAST({self.sql(n.args[0], d)} AS HUGEINT))")
        return f"abs({self.sql(n.args[0], d)})"

    def case_sql(self, n: ir.Case, d: str) -> str:
        whens = " ".join(f"WHEN {self.sql(c, d)} THEN {self.sql(v, d)}" for c, v in n.whens)
        default = self.sql(n.default, d) if n.default is not None else "NULL"
        return f"(CASE {whens} ELSE {default} END)"

    # --- rows: codelists and spells -------------------------------------------------------
    def spell_has_sql(self, n: ir.SpellHas, d: str) -> str:
        """The row's spell number among the spells with a matching row of ``n.table`` (spell
        numbers are store-wide: no join on the patient). Inside, ``e`` is the inner row."""
        where = self.sql(n.where, d) if n.where is not None else "TRUE"
        date = TABLES[n.table].sort_date
        return (f"COALESCE(e.spell_id IN (SELECT e.spell_id FROM {n.table} e WHERE e.spell_id IS NOT NULL "
                f"AND e.{date} <= {d} AND {where}), FALSE)")

    def in_codelist_sql(self, n: ir.InCodelist, d: str) -> str:
        cl, col = n.codelist, n.column
        parts = []
        if cl.codes:
            parts.append(self.values_in(f"e.{col.column}", cl.codes, ir.T.CODE))
        parts += [f"starts_with(e.{col.column}, {sql_literal(p)})" for p in cl.prefixes]
        system = ""
        if TABLES[col.table].column(col.column).code_system == "code_system":
            system = f"e.code_system = {sql_literal(cl.system)} AND "
        elif TABLES[col.table].column(col.column).code_system != cl.system:
            return "FALSE"
        return f"COALESCE({system}({' OR '.join(parts)}), FALSE)"

    def codelist_rows(self, cl: ir.Codelist, what: str) -> str:
        """(code, is_prefix, category, weight) rows of a codelist: an inline table, or for a
        long codelist a registered one. Weights are whole numbers of 10^-k units
        (ir.Codelist.scaled_weights), so that scores add them exactly."""
        entries = list(cl.codes) + list(cl.prefixes)
        cats = list(cl.categories) if cl.categories else [None] * len(entries)
        weights = list(cl.scaled_weights) if cl.weights else [None] * len(entries)
        prefix = [i >= len(cl.codes) for i in range(len(entries))]
        if self.con is not None and len(entries) > INLINE_UP_TO:
            key = ("codelist", cl)
            if key not in self.q.lookups:
                name = f"lookup{len(self.q.lookups)}"
                self.con.register(name, pa.table({"code": pa.array(entries, pa.string()), "is_prefix": prefix,
                                                  "category": pa.array(cats, pa.string()),
                                                  "weight": pa.array(weights, pa.int64())}))
                self.q.lookups[key] = name
            return f"{self.q.lookups[key]} {what}"
        rows = [f"({sql_literal(code)}, {sql_literal(p)}, {sql_literal(cat) if cat else 'NULL'}, "
                f"{f'CAST({w} AS BIGINT)' if w is not None else 'NULL::BIGINT'})"
                for code, p, cat, w in zip(entries, prefix, cats, weights)]
        return f"(VALUES {', '.join(rows)}) {what}(code, is_prefix, category, weight)"

    def category_join(self, cl: ir.Codelist, code: str) -> str:
        """The codelist's rows ``cl`` joined to each row ``e`` whose code (column ``code``)
        they match: a code in two categories joins twice."""
        # an equality join (hashed) unless the codelist has prefixes: the OR of the two
        # conditions plans as a nested loop over every row and every codelist entry
        on = (f"e.{code} = cl.code" if not cl.prefixes else
              f"(NOT cl.is_prefix AND e.{code} = cl.code) OR (cl.is_prefix AND starts_with(e.{code}, cl.code))")
        return f" JOIN {self.codelist_rows(cl, 'cl')} ON {on}"

    # --- aggregations: one grouped subquery each ------------------------------------------
    def window(self, n: ir.Aggregate | ir.Trend, table: str, d: str) -> str:
        """The condition that a row ``e`` of ``table`` is in the aggregation's window at ``d``:
        dated on or before ``d``, within its range."""
        date = f"e.{TABLES[table].sort_date}"
        w = n.window
        if w.kind == "active":
            return f"e.start_date <= {d} AND (e.end_date IS NULL OR e.end_date >= {d})"
        if w.kind == "range":
            return f"{date} <= {_shift(d, -w.end[0], -w.end[1])} AND {date} > {_shift(d, -w.start[0], -w.start[1])}"
        return f"{date} <= {d}"

    def subquery(self, n: ir.Node, d: str, build) -> str:
        """The alias of the one subquery (per node and date) that ``build()`` writes, joined to
        this alias's patients. Named after the subqueries its filter uses: they come first."""
        key = (n, d)
        if key not in self.q.ctes:
            sql = build()
            self.q.ctes[key] = (f"agg{len(self.q.ctes)}", sql)
        return self.joined(self.q.ctes[key][0])

    def grouped(self, n: ir.Aggregate, d: str, reduce: str, empty: str | None = None) -> str:
        """An aggregation whose value is the SQL aggregate ``reduce`` over its rows (``{v}``:
        its value per row; ``{order}``: the rows' order; ``{date}``: their date), ``empty``
        over none (None: missing)."""
        def build() -> str:
            r = self.row_compiler()
            where = [self.window(n, n.table, d)] + ([r.sql(n.where, d)] if n.where is not None else [])
            joins = self.category_join(n.value.codelist, n.value.code.column) \
                if isinstance(n.value, ir.CategoryOf) else ""
            date = f"e.{TABLES[n.table].sort_date}"
            value = r.sql(n.value, d) if n.value is not None else None
            agg = reduce.format(v=value, order=f"{date}, e.row", date=date, d=d)
            return (f"SELECT e.patient, {agg} AS v FROM {r.rows(n)}{joins} "
                    f"WHERE {' AND '.join(where)} GROUP BY e.patient")

        ref = f"{self.subquery(n, d, build)}.v"
        return f"COALESCE({ref}, {empty})" if empty else ref

    def exists_sql(self, n: ir.Exists, d: str) -> str:
        return self.grouped(n, d, "TRUE", "FALSE")

    def count_sql(self, n: ir.Count, d: str) -> str:
        return self.grouped(n, d, "count(*)", "0")

    def count_distinct_sql(self, n: ir.CountDistinct, d: str) -> str:
        return self.grouped(n, d, "count(DISTINCT {v})", "0")

    def sum_sql(self, n: ir.Sum, d: str) -> str:
        return self.grouped(n, d, "CAST(sum({v}) AS DOUBLE)", "0")

    def mean_sql(self, n: ir.Mean, d: str) -> str:
        return self.grouped(n, d, "CAST(avg({v}) AS DOUBLE)")

    def median_sql(self, n: ir.Median, d: str) -> str:
        return self.grouped(n, d, "CAST(median({v}) AS DOUBLE)")

    def min_sql(self, n: ir.Min, d: str) -> str:
        return self.grouped(n, d, "min({v})")

    def max_sql(self, n: ir.Max, d: str) -> str:
        return self.grouped(n, d, "max({v})")

    def first_sql(self, n: ir.First, d: str) -> str:
        return self.grouped(n, d, "arg_min({v}, ({order}))")

    def last_sql(self, n: ir.Last, d: str) -> str:
        return self.grouped(n, d, "arg_max({v}, ({order}))")

    def days_since_sql(self, n: ir.DaysSince, d: str) -> str:
        return self.grouped(n, d, "date_diff('day', max({date}), {d})")

    def weighted_score_sql(self, n: ir.WeightedScore, d: str) -> str:
        """Each category a patient has, once, with its weight (the largest among its codes, in
        whole 10^-k units), added as a whole number and divided once by 10^k: the double
        nearest the exact sum. With a hierarchy, a category does not count when a category
        above it is present too."""
        def build() -> str:
            r = self.row_compiler()
            where = [self.window(n, n.table, d)] + ([r.sql(n.where, d)] if n.where is not None else [])
            weights = ", ".join(f"({sql_literal(c)}, CAST({w} AS BIGINT))"
                                for c, w in sorted(n.codelist.category_weights.items()))
            present = (f"SELECT p.patient, p.category, cw.w FROM (SELECT DISTINCT e.patient, cl.category "
                       f"FROM {r.rows(n)}{self.category_join(n.codelist, TABLES[n.table].code_column)} "
                       f"WHERE {' AND '.join(where)} AND cl.category IS NOT NULL) p "
                       f"JOIN (VALUES {weights}) cw(category, w) ON cw.category = p.category")
            scale = sql_literal(float(10 ** n.codelist.weight_places))
            if not n.hierarchy:
                return f"SELECT patient, CAST(sum(w) AS DOUBLE) / {scale} AS v FROM ({present}) GROUP BY patient"
            pairs = ", ".join(f"({sql_literal(hi)}, {sql_literal(lo)})" for hi, lo in n.hierarchy)
            return (f"WITH present AS ({present}), hierarchy(higher, lower) AS (VALUES {pairs}) "
                    f"SELECT c.patient, CAST(sum(c.w) AS DOUBLE) / {scale} AS v FROM present c "
                    f"WHERE NOT EXISTS (SELECT 1 FROM hierarchy h JOIN present s ON s.category = h.higher "
                    f"WHERE h.lower = c.category AND s.patient = c.patient) GROUP BY c.patient")

        return f"COALESCE({self.subquery(n, d, build)}.v, 0.0)"

    def trend_sql(self, n: ir.Trend, d: str) -> str:
        """Counts (or sums) in monthly buckets (D - (i+1) months, D - i months], the slope of
        their least-squares line: empty buckets add (x - mean) * 0 = 0 to the numerator, so
        summing over the buckets with rows is exact."""
        def build() -> str:
            r = self.row_compiler()
            date = f"e.{TABLES[n.table].sort_date}"
            where = [self.window(n, n.table, d)] + ([r.sql(n.where, d)] if n.where is not None else [])
            y = "count(*)" if n.value is None else f"coalesce(sum({r.sql(n.value, d)}), 0)"
            # bucket i: x runs forward in time
            bucket = " ".join(f"WHEN {date} > {_shift(d, -(i + 1), 0)} THEN {n.months - 1 - i}"
                              for i in range(n.months))
            xs = list(range(n.months))
            mx = sum(xs) / len(xs)
            sxx = sum((x - mx) ** 2 for x in xs)
            return (f"SELECT patient, CASE WHEN count(*) < 2 THEN 0.0 ELSE "
                    f"sum((x - {mx}) * y) / {sxx} END AS v FROM ("
                    f"SELECT e.patient, CASE {bucket} END AS x, {y} AS y FROM {r.rows(n)} "
                    f"WHERE {' AND '.join(where)} GROUP BY e.patient, x) GROUP BY patient")

        return f"COALESCE({self.subquery(n, d, build)}.v, 0.0)"

    # --- ranks within the population ------------------------------------------------------
    def standing(self, n: ir.PopulationRank, d: str) -> str:
        """One subquery per ranked value: the population's values with cumulative counts,
        and for every patient (member or not) how many members have a smaller value
        (an ASOF join finds the last member value below theirs). Its alias."""
        key = (n, d)
        if key not in self.q.ctes:
            self.q.aliases += 1
            inner = self.with_alias(f"r{self.q.aliases}")
            x = inner.sql(n.operand, d)
            member = inner.sql(self.population, d) if self.population is not None else "TRUE"
            name = f"rank{len(self.q.ctes)}"
            sql = (f"WITH vals AS (SELECT {inner.a}.patient, CAST({x} AS DOUBLE) AS x, "
                   f"COALESCE({member}, FALSE) AS member FROM {inner.patients_from()}), "
                   f"m AS (SELECT x, count(*) AS c FROM vals WHERE member AND x IS NOT NULL GROUP BY x), "
                   f"cum AS (SELECT x, sum(c) OVER (ORDER BY x) AS le FROM m) "
                   f"SELECT v.patient, v.x, (SELECT coalesce(sum(c), 0) FROM m) AS n, "
                   f"lt.le AS below, le.le AS at_or_below FROM vals v "
                   f"ASOF LEFT JOIN cum lt ON v.x > lt.x ASOF LEFT JOIN cum le ON v.x >= le.x")
            self.q.ctes[key] = (name, sql)
        return self.joined(self.q.ctes[key][0])

    def pooled_standing(self, n: ir.RankInPool, d: str) -> str:
        """``standing`` within a pool gathered beforehand (a registered table of its values)
        instead of the population's values. Its alias."""
        if self.con is None:
            raise ValueError("a pooled rank needs a connection to register its pool on")
        pool_key = ("pool", n.pool.digest)
        if pool_key not in self.q.lookups:
            self.q.lookups[pool_key] = name = f"pool{len(self.q.lookups)}"
            self.con.register(name, pa.table({"x": pa.array(n.pool.values, pa.float64())}))
        key = (n.operand, n.pool, d)
        if key not in self.q.ctes:
            self.q.aliases += 1
            inner = self.with_alias(f"r{self.q.aliases}")
            x = inner.sql(n.operand, d)
            sql = (f"WITH vals AS (SELECT {inner.a}.patient, CAST({x} AS DOUBLE) AS x FROM {inner.patients_from()}), "
                   f"m AS (SELECT x, count(*) AS c FROM {self.q.lookups[pool_key]} GROUP BY x), "
                   f"cum AS (SELECT x, sum(c) OVER (ORDER BY x) AS le FROM m) "
                   f"SELECT v.patient, v.x, {len(n.pool)} AS n, lt.le AS below, le.le AS at_or_below FROM vals v "
                   f"ASOF LEFT JOIN cum lt ON v.x > lt.x ASOF LEFT JOIN cum le ON v.x >= le.x")
            self.q.ctes[key] = (f"rank{len(self.q.ctes)}", sql)
        return self.joined(self.q.ctes[key][0])

    def rank_in_pool_sql(self, n: ir.RankInPool, d: str) -> str:
        j = self.pooled_standing(n, d)
        if n.kind == "percentile":
            return (f"(CASE WHEN {j}.x IS NULL THEN NULL ELSE "
                    f"100.0 * coalesce({j}.below, 0) / NULLIF({j}.n, 0) END)")
        return (f"(CASE WHEN {j}.x IS NULL THEN FALSE ELSE "
                f"({j}.n - coalesce({j}.at_or_below, 0)) < {sql_literal(float(n.fraction))} * {j}.n END)")

    def percentile_sql(self, n: ir.Percentile, d: str) -> str:
        j = self.standing(n, d)
        return f"(CASE WHEN {j}.x IS NULL THEN NULL ELSE 100.0 * coalesce({j}.below, 0) / NULLIF({j}.n, 0) END)"

    def top_sql(self, n: ir.Top, d: str) -> str:
        j = self.standing(n, d)
        return (f"(CASE WHEN {j}.x IS NULL THEN FALSE ELSE "
                f"({j}.n - coalesce({j}.at_or_below, 0)) < {sql_literal(float(n.fraction))} * {j}.n END)")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _method_for(compiler: type, node: type):
    """How ``compiler`` writes nodes of class ``node``: the TRANSFORMS entry or the
    ``<name>_sql`` method of the nearest class in its bases that has one."""
    for cls in node.__mro__:
        given = compiler.TRANSFORMS.get(cls)
        if isinstance(given, str):
            return getattr(compiler, given)
        if given is not None:
            return given
        method = getattr(compiler, f"{_snake(cls.__name__)}_sql", None)
        if method is not None:
            return method
    def refuse(self, n, d):
        raise NotImplementedError(f"{type(n).__name__} in this position")
    return refuse


def query_text(exprs: dict[str, ir.Node], as_of: dt.date, population: ir.Node | None = None,
               con: duckdb.DuckDBPyConnection | None = None, where: str = "") -> str:
    """The one SQL query the reference engine runs for ``exprs`` at ``as_of`` (what
    ``casefind explain --sql`` prints): over the views ``register_store`` makes, one row per
    patient. With ``con``, long value lists are tables registered on it; without, inline."""
    d = sql_literal(as_of)
    comp = SqlCompiler(population, con=con)
    cols = [f"{comp.patient(node, d)} AS \"{name}\"" for name, node in exprs.items()]
    return (f"{comp.with_clause()} SELECT p.patient{', ' if cols else ''}{', '.join(cols)} "
            f"FROM {comp.patients_from()} {where} ORDER BY p.patient")


def evaluate(store: Store, exprs: dict[str, ir.Node], as_of: dt.date,
             population: ir.Node | None = None, con: duckdb.DuckDBPyConnection | None = None,
             patients: np.ndarray | None = None) -> pa.Table:
    """One row per stored patient (or per patient in ``patients``): ``patient`` (store
    index) and each named expression at ``as_of``. ``population`` is what percentile/top
    rank within (always the whole population, whoever is returned)."""
    con = con or duckdb.connect()
    ranks = any(ir.contains(node, ir.PopulationRank) for node in exprs.values())
    # only some patients wanted and no rank needs everyone's values: scan only their rows
    # (each once: a patient given twice must not have their rows registered twice)
    if patients is not None and not ranks:
        roots = [*exprs.values(), *([population] if population is not None else [])]
        register_store(con, store, only=np.unique(np.asarray(patients, dtype=np.int64)), columns=columns_read(roots))
    else:
        register_store(con, store)
    only = ""
    if patients is not None:
        con.register("only_patients", pa.table({"patient": pa.array(np.asarray(patients), pa.int32())}))
        only = "WHERE p.patient IN (SELECT patient FROM only_patients)"
    rel = con.sql(query_text(exprs, as_of, population, con, only))
    fetch = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
    return fetch()


class DuckDBQueryEngine(Engine):
    """The reference engine (see the module docstring): a correctness oracle, one plain SQL
    query per evaluation and no optimisation, which every other engine must agree with.
    With ``patients``, only their rows are scanned (unless a percentile/top needs everyone),
    which keeps a run's re-check of its listed patients fast at any store size."""

    name = "duckdb"
    reference = True

    def evaluate(self, store: Store, exprs: dict[str, ir.Node], as_of: dt.date,
                 population: ir.Node | None = None, patients: np.ndarray | None = None) -> pa.Table:
        return evaluate(store, exprs, as_of, population, patients=patients)


ENGINE = DuckDBQueryEngine()
