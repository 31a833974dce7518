"""A tiny hand-written population (readable in a test failure) and the rows that break
the contract, one per quarantine reason. Imported by tests; fixtures live in conftest.py."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from casefind.contract import TABLES

N = None  # a null cell


def cli(*args, **kw):
    """Run the casefind command line in-process; arguments may be paths or numbers."""
    from click.testing import CliRunner

    from casefind.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kw)


def synthetic_store(root: Path, patients: int, seed: int) -> Path:
    """``casefind synth`` then ``casefind ingest`` under ``root``; the store's path."""
    r = cli("synth", "--patients", patients, "--seed", seed, "--out", root / "src")
    assert r.exit_code == 0, r.output
    r = cli("ingest", root / "src", "--store", root / "store")
    assert r.exit_code == 0, r.output
    return root / "store"


def single_and_sharded(root: Path, patients: int, seed: int, shard_counts) -> Path:
    """One synthetic source under ``root`` ingested as ``root/single`` and as ``root/shN``
    for each N of ``shard_counts``; ``root``."""
    from casefind.ingest.sharded import run_sharded_ingest

    r = cli("synth", "--patients", patients, "--seed", seed, "--out", root / "src")
    assert r.exit_code == 0, r.output
    r = cli("ingest", root / "src", "--store", root / "single")
    assert r.exit_code == 0, r.output
    for n in shard_counts:
        run_sharded_ingest(root / "src", root / f"sh{n}", n)
    return root


GOOD = {
    "practices": [
        ("Z00001", "Elm Surgery", "LOC001", "North", "SYS01", "Demo ICB"),
        ("Z00002", "Oak Practice", "LOC001", "North", "SYS01", "Demo ICB"),
    ],
    "patients": [
        ("p1", "1950-03-01", "F", "Z00001", "2000-01-01", N, N, "3", "A", "E01000001"),
        ("p2", "1940-06-15", "M", "Z00002", "1990-01-01", N, "2025-05-01", "7", N, N),
        ("p3", "1990-01-01", "U", "Z00001", "2010-01-01", "2024-01-01", N, N, "Z", N),
    ],
    "diagnoses": [
        ("p1", "2020-01-01", "snomed", "38341003", "primary_care"),
        ("p2", "2024-02-01", "icd10", "I50.9", "acute"),
        ("p1", "2019-05-01", "snomed", "44054006", N),
    ],
    "activity": [
        ("p1", "2025-01-01", "2025-01-05", "emergency_admission", "3000", "I509", "RXX", "home"),
        ("p2", "2024-03-01", N, "ae", "250.5", N, N, N),
        ("p1", "2024-12-01", N, "gp", N, N, N, N),
    ],
    "medications": [("p1", "2025-06-01", "dmd", "39732311000001104", "28")],
    "observations": [("p1", "2025-06-01", "snomed", "271649006", "142", "mmHg")],
    "experience": [("p1", "2025-07-01", "pam", "55.2")],
    "registers": [("p2", "case_management", "2024-01-01", N)],
    "opt_outs": [("p3", "ndo", "2023-01-01")],
    "identities": [
        ("p1", "9434765919", "Ann", "Smith", "Z00001"),
        ("p2", "4010232137", "Bob", "Jones", "Z00002"),
    ],
}

# (table, row, expected reason); each row breaks exactly one rule
BAD = [
    ("practices", ("Z00001", "Elm again", "LOC001", "North", "SYS01", "Demo ICB"), "duplicate_practice"),
    ("practices", ("Z00009", "No locality", N, "North", "SYS01", "Demo ICB"), "missing_value"),
    ("patients", ("p1", "1951-01-01", "F", "Z00001", "2000-01-01", N, N, N, N, N), "duplicate_patient"),
    ("patients", ("b2", "1951-13-01", "F", "Z00001", "2000-01-01", N, N, N, N, N), "unparseable_date"),
    ("patients", ("b3", N, "F", "Z00001", "2000-01-01", N, N, N, N, N), "missing_value"),
    ("patients", ("b4", "1951-01-01", "X", "Z00001", "2000-01-01", N, N, N, N, N), "unknown_sex"),
    ("patients", ("b5", "1951-01-01", "F", "Q99999", "2000-01-01", N, N, N, N, N), "unknown_practice"),
    ("patients", ("b6", "1951-01-01", "F", "Z00001", "2000-01-01", N, N, "11", N, N), "out_of_range"),
    ("patients", ("b7", "1951-01-01", "F", "Z00001", "2000-01-01", N, "1950-01-01", N, N, N), "death_before_birth"),
    ("patients", ("b8", "1951-01-01", "F", "Z00001", "2000-01-01", "1999-01-01", N, N, N, N), "end_before_start"),
    ("patients", ("b9", "1951-01-01", "F", "Z00001", "2000-01-01", N, N, "x", N, N), "unparseable_number"),
    ("patients", ("b10", "1951-01-01", "F", "Z00001", "2000-01-01", N, N, N, "!", N), "unknown_ethnicity"),
    ("diagnoses", ("nobody", "2020-01-01", "snomed", "38341003", N), "unknown_patient"),
    ("diagnoses", ("p1", "2020-02-30", "snomed", "38341003", N), "unparseable_date"),
    ("diagnoses", ("p1", "1949-01-01", "snomed", "38341003", N), "event_before_birth"),
    ("diagnoses", ("p2", "2025-06-01", "snomed", "38341003", N), "event_after_death"),
    ("diagnoses", ("p1", "2020-01-01", "loinc", "1234-5", N), "unknown_code_system"),
    ("diagnoses", ("p1", "2020-01-01", "snomed", "38341003", "pharmacy"), "unknown_source"),
    ("diagnoses", ("p1", "2020-01-01", "snomed", N, N), "missing_value"),
    ("activity", ("p1", "2025-01-01", N, "spa", N, N, N, N), "unknown_setting"),
    ("activity", ("p1", "2025-01-01", N, "gp", "-5", N, N, N), "negative_cost"),
    ("activity", ("p1", "2025-01-05", "2025-01-01", "emergency_admission", N, N, N, N), "end_before_start"),
    ("activity", ("p1", "2025-01-01", "2025-01-02", "emergency_admission", N, N, N, "moon"),
     "unknown_discharge_destination"),
    ("activity", ("p1", "2025-01-01", N, "gp", "ten", N, N, N), "unparseable_number"),
    ("activity", ("p2", "2025-04-20", "2025-05-09", "emergency_admission", N, N, N, N), "event_after_death"),
    ("medications", ("p1", "2025-06-01", "dmd", "123", "-1"), "out_of_range"),
    ("medications", ("p1", "2025-06-01", "snomed", "123", "1"), "unknown_code_system"),
    ("observations", ("p1", "2025-06-01", "snomed", "271649006", N, N), "missing_value"),
    ("experience", ("p1", "2025-07-01", "pam", "lots"), "unparseable_number"),
    ("registers", ("p1", "palliative_care", "2025-01-01", "2024-01-01"), "end_before_start"),
    ("opt_outs", ("p1", "maybe", "2023-01-01"), "unknown_kind"),
    ("identities", ("p3", "9434765918", "Cy", "Brown", "Z00001"), "invalid_nhs_number"),
    ("identities", ("ghost", "9434765919", "Di", "Green", "Z00001"), "unknown_patient"),
    ("identities", ("p1", "9434765919", "Ann", "Smyth", "Z00001"), "duplicate_patient"),
]


def as_table(name: str, rows) -> pa.Table:
    """Rows as tuples in the contract's source-column order. Shorter tuples leave the later
    columns out of the source altogether (a v1 diagnosis is (patient, date, system, code,
    source); v2 adds spell_id and position), as an older extract would."""
    names = [c.name for c in TABLES[name].source_columns]
    width = max((len(r) for r in rows), default=len(names))
    return pa.table({n: pa.array([r[i] if i < len(r) else None for r in rows], pa.string())
                     for i, n in enumerate(names[:width])})


def write_source(root: Path, tables: dict[str, list], fmt: str = "csv") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        folder = root / "restricted" if name == "identities" else root
        folder.mkdir(exist_ok=True)
        t = as_table(name, rows)
        if fmt == "csv":
            pacsv.write_csv(t, folder / f"{name}.csv")
        else:
            pq.write_table(t, folder / f"{name}.parquet")
    return root


def with_bad_rows() -> dict[str, list]:
    tables = {k: list(v) for k, v in GOOD.items()}
    for name, row, _ in BAD:
        tables[name].append(row)
    return tables
