"""What the quality report measures in each table: the date that puts a row in a month, the
column that says which data provider sent it, where each column must be filled, and how many
rows one patient may plausibly have in a month.

Written down once, here, so that docs/quality.md and the report say the same thing. The
SQL fragments below are built from contract constants only, never from data or input.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from casefind.contract import TABLES
from casefind.contract.schema import ADMISSION_SETTINGS
from casefind.engines.duckdb_sql import sql_literal

_ADMISSION = f"setting IN ({', '.join(sql_literal(s) for s in ADMISSION_SETTINGS)})"
_HOSPITAL = f"setting IN ({', '.join(sql_literal(s) for s in (*ADMISSION_SETTINGS, 'ae', 'outpatient'))})"


@dataclass(frozen=True)
class Measured:
    """One table as the report sees it.

    ``unit_sql``/``unit_kind``: the data provider of a row (an SQL expression over the table's
    view; None: the table names none, and is reported per month only); ``fallback_sql``, the
    unit of rows whose provider is empty (activity: its setting, one feed per setting);
    ``applies``: the rows a nullable column must be filled in (absent: every row); ``lifecycle``:
    columns whose emptiness means "not yet" (still registered, alive, on the register) and are
    not measured; ``max_per_month``: rows of one patient in one month above which the month is
    implausible."""

    name: str
    month: str | None
    unit_kind: str | None = None
    unit_sql: str | None = None
    fallback_kind: str | None = None
    fallback_sql: str | None = None
    unit_note: str = ""
    applies: dict[str, tuple[str, str]] = field(default_factory=dict)  # column -> (sql, words)
    lifecycle: tuple[str, ...] = ()
    max_per_month: int | None = None

    @property
    def contract(self):
        return TABLES[self.name]

    def measured_columns(self) -> list[str]:
        """Contract columns whose completeness is measured (derived and lifecycle ones left out)."""
        return [c.name for c in self.contract.columns
                if not c.derived and c.name not in self.lifecycle and not self._keyed(c)]

    def _keyed(self, column) -> bool:
        return column.kind == "patient_id" and self.contract.per_patient_events

    def not_measured(self) -> dict[str, str]:
        out = {c.name: "derived on ingest, not read from the source" for c in self.contract.columns if c.derived}
        out.update({c.name: "the store's patient key: a row without one is quarantined on ingest"
                    for c in self.contract.columns if self._keyed(c)})
        out.update({c: "empty means not (yet) happened" for c in self.lifecycle})
        return out


MEASURED: dict[str, Measured] = {m.name: m for m in (
    Measured("practices", None, unit_note="the reporting hierarchy: per table only"),
    Measured("patients", None, unit_kind="practice", unit_sql="practice_code",
             unit_note="per practice (registration_start is not a month of data), no months",
             lifecycle=("registration_end", "death_date")),
    Measured("activity", "start_date", unit_kind="provider", unit_sql="provider_code",
             fallback_kind="setting", fallback_sql="setting",
             unit_note="per provider_code; rows without one per setting (one feed each)",
             applies={
                 "end_date": (f"{_ADMISSION} AND discharge_destination IS NOT NULL",
                              "admissions with a discharge destination"),
                 "discharge_destination": (f"{_ADMISSION} AND end_date IS NOT NULL", "admissions with an end date"),
                 "primary_diagnosis": (_ADMISSION, "admissions"),
                 "spell_id": (_ADMISSION, "admissions"),
                 "provider_code": (_HOSPITAL, "hospital settings (admissions, ae, outpatient)"),
             },
             max_per_month=124),  # four contacts a day, every day: home care at its most
    Measured("diagnoses", "date", unit_kind="source", unit_sql="source",
             unit_note="per source (primary_care, acute, ...)",
             applies={"spell_id": ("source = 'acute'", "acute diagnoses"),
                      "position": ("source = 'acute'", "acute diagnoses")},
             max_per_month=150),
    Measured("procedures", "date", unit_kind="provider", unit_sql="spell_provider",
             unit_note="per provider_code of the spell the procedure was done in (none without a spell)",
             max_per_month=60),
    Measured("medications", "date", unit_note="no provider column: per month only", max_per_month=62),
    Measured("observations", "date", unit_note="no provider column: per month only", max_per_month=150),
    Measured("experience", "date", unit_note="no provider column: per month only", max_per_month=31),
    Measured("registers", "start_date", unit_note="no provider column: per month only",
             lifecycle=("end_date",), max_per_month=10),
    Measured("opt_outs", "date", unit_note="no provider column: per month only", max_per_month=4),
)}

# Tables holding codes: (table, code column, SQL of the code system). Activity's primary
# diagnosis is ICD-10 by the contract.
CODED: dict[str, tuple[str, str]] = {
    "diagnoses": ("code", "code_system"),
    "procedures": ("code", "code_system"),
    "medications": ("code", "code_system"),
    "observations": ("code", "code_system"),
    "activity": ("primary_diagnosis", "'icd10'"),
}


def unit_label(kind: str | None, code: str | None) -> str:
    """How a unit is named to a reader: 'provider RXX', 'setting gp (no provider_code)'."""
    if kind is None:
        return "all rows"
    if code is None:
        return {"provider": "provider unknown (no spell)", "source": "no source given"}.get(kind, f"no {kind}")
    if kind == "setting":
        return f"setting {code} (no provider_code)"
    return f"{kind} {code}"
