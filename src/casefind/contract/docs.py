"""Render the data contract as Markdown for analysts (docs/data-contract.md is this output;
a test keeps the two the same)."""
from __future__ import annotations

from casefind.contract.quarantine import REASONS
from casefind.contract.schema import (
    ADMISSION_SETTINGS,
    CODE_PATTERN,
    CODE_PATTERN_DOC,
    CONTRACT_VERSION,
    EARLIEST_DATE,
    EXTRA_PREFIX,
    IDENTIFIER_NAMES,
    IDENTIFIER_PREFIXES,
    LATEST_DATE,
    MAX_POSITION,
    TABLES,
    TRANSFER_DAYS,
    Column,
    Table,
)

_KIND = {"patient_id": "id (text or integer)", "date": "date (YYYY-MM-DD)", "enum": "text, one of",
         "code": "code (text)", "text": "text", "float": "number", "int": "integer",
         "spell": "spell id (text or integer)"}
_DERIVED = "**derived on ingest**, not read from the source: "


def _type(c: Column) -> str:
    t = _KIND[c.kind]
    if c.kind == "enum":
        t += " " + ", ".join(f"`{v}`" for v in c.values)
    if c.kind == "code":
        t += f" in the system named by `{c.code_system}`" if c.code_system == "code_system" else f" ({c.code_system})"
    if c.minimum is not None or c.maximum is not None:
        lo = "" if c.minimum is None else f"{c.minimum:g}"
        hi = "" if c.maximum is None else f"{c.maximum:g}"
        t += f", {lo}–{hi}" if hi else f", ≥ {lo}"
    return t


def _pattern_rules(t: Table) -> list[str]:
    by_pattern: dict[str, list[str]] = {}
    for c in t.columns:
        if c.pattern:
            by_pattern.setdefault(c.pattern, []).append(f"`{c.name}`")
    doc = {CODE_PATTERN: f" ({CODE_PATTERN_DOC}; `invalid_code` otherwise)"}
    return [f"{', '.join(names)} match{'es' if len(names) == 1 else ''} `{pattern}`{doc.get(pattern, '')}"
            for pattern, names in by_pattern.items()]


def _spell_rules(t: Table) -> list[str]:
    spells = [c.name for c in t.columns if c.kind == "spell"]
    if not spells:
        return []
    if t.name == "activity":
        return [f"`{spells[0]}` is unique (`duplicate_spell`; the first good row is kept)"]
    rules = [f"`{spells[0]}` is the spell_id of a stored activity row of the same patient (`unknown_spell`)"]
    if "position" in t.names:
        rules.append("a `position` needs a `spell_id` (`position_without_spell`)")
    return rules


def _spells_section() -> list[str]:
    admissions = " and ".join(f"`{s}`" for s in ADMISSION_SETTINGS)
    return [
        "## Spells, positions and procedures", "",
        ("Contract v2 links hospital data by spell. A **spell** is an activity row with a `spell_id` "
         "(an admission, as the provider's spell identifier gives it: text or integer). Spell ids are "
         "unique in activity: a row repeating an earlier row's spell_id is `duplicate_spell` (the first "
         "good row is kept). A diagnosis or procedure coded in a spell names its `spell_id`, which must "
         "be the spell_id of a stored activity row of the same patient, else `unknown_spell` (activity "
         "is validated first, so a diagnosis of a quarantined spell is quarantined too); rows from "
         "outside hospital leave it empty."), "",
        ("A **position** is a diagnosis's or procedure's place in its spell's coding: 1 the primary "
         "diagnosis or the main procedure, 2 and above the others (secondary diagnoses, further "
         f"procedures), at most {MAX_POSITION} (`out_of_range` otherwise). A position needs a spell_id "
         "(`position_without_spell`); a spell_id without a position is kept."), "",
        ("**Procedures** (optional) are OPCS-4 codes with `code_system` `opcs4` (any other is "
         "`unknown_code_system`); like ICD-10, OPCS-4 codes are stored without the dot (a dot is "
         "removed on ingest, in every table: `K40.1` → `K401`)."), "",
        ("In the store a spell id is a **spell number** (1, 2, ...; 0 for none), the same number in "
         "activity, diagnoses and procedures: one store-wide dictionary `spell` (entry 0 empty, entry "
         "*n* the source id of spell *n*) shows each number as its source id. Rules compare spell "
         "numbers, e.g. `count(diagnoses, spell_id == index_spell)` with "
         "`index_spell: last(activity.spell_id, setting == \"emergency_admission\")`."), "",
        ("**Continuous inpatient (CIP) spells and transfers.** Ingest derives two columns of "
         "activity from each patient's admissions (rows with setting "
         f"{admissions}), taken in order of start date, then end date (none last). An admission "
         "*continues* the admission just before it when that one was discharged to `other_hospital` "
         f"and this one starts 0 to {TRANSFER_DAYS} days after that discharge (after the HES CIP spell "
         "method, which links transfers between providers); a run of admissions each continuing the "
         "one before is one CIP spell, which ends with its last admission's end date (an admission "
         "with no end date, still in hospital, ends no CIP spell). Spells that overlap are not "
         "transfers."), "",
        ("- `cips_position`: 1 for an admission that starts a CIP spell, 2, 3, ... for each transfer "
         "that continues it; empty for rows that are not admissions."),
        ("- `previous_discharge`: for an admission that starts a CIP spell, the latest end date of the "
         "patient's earlier CIP spells that ended on or before its start, that is the discharge at "
         "the end of the previous transfer chain, elective or emergency; empty for transfers "
         "(position 2 and above), for a first admission and for other rows. A readmission is then "
         "`cips_position == 1 and days_between(previous_discharge, start_date) <= 29` (0 for a "
         "same-day readmission)."), "",
        ("Both look only backwards (an admission's values depend on admissions that started on or "
         "before it), so a rule evaluated at any date sees only what was known then. They are "
         "derived the same way from a v1 source. A source column named like a derived column is "
         "dropped (never read), and the ingest summary says so."), "",
        ("**v1 sources** (no `spell_id` or `position` columns, no procedures) ingest as before: the "
         "spell columns are empty and procedures is an empty table."), "",
    ]


def render() -> str:
    """The whole contract page: what a source is, each table, spells, and quarantine."""
    out = _introduction()
    for t in TABLES.values():
        out += _table_section(t)
    out += _spells_section()
    out += _quarantine_section()
    return "\n".join(out) + "\n"


def _introduction() -> list[str]:
    """What a source is: files, folders or a database; names, types, extras, identities."""
    return [
        f"# The data contract (v{CONTRACT_VERSION})",
        "",
        "<!-- generated by `python -m casefind.contract.docs > docs/data-contract.md`; edit "
        "src/casefind/contract/schema.py, not this file -->",
        "",
        "The tables an analyst gives `casefind ingest`: one file per table (Parquet preferred, CSV "
        "accepted) named after the table (`patients.parquet`, `activity.csv`, ...) in one folder, "
        "or the same tables in a DuckDB database. A table may also be a folder of Parquet parts "
        "named after it (`activity/part-0.parquet`, ...), hive-partitioned or not "
        "(`activity/year=2026/month=01/part-0.parquet`: each `key=value` folder gives a column of "
        "that name, as text). Parts may differ: a column missing from a part is empty there; a "
        "column typed differently across parts is read as text (int32 and int64 promote to int64 "
        "unless another column forces text); a column also given by a partition folder is an "
        "error. A sharded ingest reads the parts a part and a batch at a time, and `casefind spark "
        "ingest` splits each part on an executor (docs/scale-out.md). "
        "Anything else in the source is listed as ignored. Column names are "
        "exact and lower-case, and a name given twice is an error; a missing optional table is an "
        "empty table; a missing nullable column is read as empty. Codes are compared exactly after "
        "trimming spaces; ICD-10 and OPCS-4 codes are stored without the dot (a dot is removed on "
        "ingest: `I50.9` → `I509`, `K40.1` → `K401`). Dates are ISO (`2026-10-31`) or Parquet dates or timestamps; "
        "`2026-02-30` is not a date, and a date before "
        f"{EARLIEST_DATE} or after {LATEST_DATE} is out of range. A number that is NaN or infinite "
        "(`1e400` in a CSV) is out of range.",
        "",
        "Column types: text (dictionary-encoded and large text included), numbers, booleans, dates "
        "and timestamps are read; a contract column of any other type (lists, structs, maps, "
        "binary, durations, intervals) is an error naming the table, column and type.",
        "",
        f"Extra columns are kept, stored as `{EXTRA_PREFIX}<name>` so that they never take the place "
        "of a store or quarantine column; the summary lists them. Extra columns that identify "
        "people are removed and never stored: in any table but identities, a column named "
        + ", ".join(f"`{n}`" for n in IDENTIFIER_NAMES) + " or starting "
        + ", ".join(f"`{p}`" for p in IDENTIFIER_PREFIXES) + " (in any case, spaces read as `_`), or "
        "whose values are mostly (more than half) valid NHS numbers. Extra columns of types the "
        "store cannot hold (lists, structs, maps, intervals) are dropped. The summary lists both.",
        "",
        "Identities are restricted: put `identities` in a subfolder `restricted/` (or beside the "
        "others); ingest writes it to its own store, readable only by its owner, never into the "
        "analysis store, and bound to the snapshot it was ingested with.",
        "",
    ]


def _table_section(t: Table) -> list[str]:
    """One table: whether it is required, its columns and what ingest checks."""
    flags = [f"recorded by `{t.recorded_by}`, not loaded" if t.recorded_by
             else "required" if t.required else "optional"]
    if t.restricted:
        flags.append("restricted")
    out = [f"## {t.name} ({', '.join(flags)})", "", t.doc, "",
           "| column | type | may be empty | notes |", "|---|---|---|---|"]
    for c in t.columns:
        doc = _DERIVED + c.doc.removeprefix("derived: ") if c.derived else c.doc
        out.append(f"| `{c.name}` | {_type(c)} | {'yes' if c.nullable else 'no'} | {doc} |")
    rules = _table_rules(t)
    if rules:
        out += ["", "Checked: " + "; ".join(rules) + "."]
    out.append("")
    return out


def _table_rules(t: Table) -> list[str]:
    """The checks ingest makes of one table's rows, in the words of the page."""
    rules = []
    if t.unique:
        rules.append(f"`{t.unique}` is unique (the first good row is kept)")
    for s, e in t.ends:
        rules.append(f"`{e}` is not before `{s}`")
    if t.event_dates:
        rules.append("the patient exists in `patients`, and " + ", ".join(f"`{d}`" for d in t.event_dates)
                     + " fall(s) between their birth and death")
    rules += _pattern_rules(t)
    if "known_practice" in t.checks:
        rules.append("`practice_code` exists in `practices`")
    if "nhs_number" in t.checks:
        rules.append("`nhs_number` is 10 digits with a valid modulus-11 check digit")
    if t.per_patient_events and not t.event_dates:
        rules.append("the patient exists in `patients`")
    return rules + _spell_rules(t)


def _quarantine_section() -> list[str]:
    """What happens to a row that breaks the contract, and the reasons, in order."""
    out = ["## What bad data gets", "",
            "Ingest never drops a row silently. A row that breaks the contract goes to the store's "
            "quarantine (`STORE/current/quarantine/<table>.parquet`, identities' to the identities "
            "store) exactly as the source gave it (extra columns named as in the store, identifying ones "
            "removed), with its source row number, one reason (the "
            "first that applies, in this order), the column concerned and a detail. The ingest "
            "summary and `casefind info` count rows by table and reason; `--strict` fails the "
            "ingest (exit code 3) instead, leaving the store unchanged. A patient whose own row is "
            "quarantined has their events quarantined as `unknown_patient`, with the detail "
            "saying so. An ingest in which no patient can be stored (an empty patients table, or "
            "every row quarantined) fails, leaving the store unchanged.", "", "| reason | meaning |", "|---|---|"]
    return out + [f"| `{r}` | {m} |" for r, m in REASONS.items()]


if __name__ == "__main__":
    print(render(), end="")
