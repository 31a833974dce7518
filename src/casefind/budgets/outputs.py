"""The budget folder, ``OUT/budget-<name>-<year>/`` (the interface helpers build on): the
tables as Parquet, statement.json and manifest.json, written into a temporary folder and
renamed into place whole."""
from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from casefind.budgets import rollup
from casefind.budgets.compute import Computed
from casefind.budgets.features import NO_DATE
from casefind.budgets.register import JOIN_REASONS, LEAVE_REASONS
from casefind.contract.schema import FUNDING_DEFAULT
from casefind.outputs import folder_swapped_in, safe_child


def tariffs_table(c: Computed) -> pa.Table:
    t = c.tariffs
    return pa.table({
        "category": pa.array(t.category, pa.string()), "label": pa.array(t.label, pa.string()),
        "people": pa.array(t.people, pa.int64()), "trimmed": pa.array(t.trimmed, pa.int64()),
        "merged_into": pa.array(t.merged_into, pa.string()),
        # a merged category with nobody in the baseline has no mean: null, not NaN (exports show a blank)
        "baseline_mean": pa.array(t.baseline_mean, pa.float64(), from_pandas=True),
        "trimmed_mean": pa.array(t.trimmed_mean, pa.float64(), from_pandas=True),
        "uplift": pa.array(t.uplift, pa.float64()), "tariff": pa.array(t.tariff, pa.float64()),
        "incentive": pa.array(t.incentive, pa.float64()), "source": pa.array(t.source, pa.string())})


def _dates(days: np.ndarray) -> pa.Array:
    days = np.asarray(days, np.int64)
    return pa.array(np.where(days == NO_DATE, 0, days).astype(np.int32), pa.date32(), mask=days == NO_DATE)


def text(codes: np.ndarray, values, encoded: bool = False) -> pa.Array:
    """Codes (-1: null) as the text values they index, without a Python object per row;
    ``encoded`` keeps them dictionary-encoded (the record-level table: decoding its millions of
    rows costs more than writing them, and every reader sees the same strings)."""
    codes = np.asarray(codes)
    indices = pa.array(np.maximum(codes, 0).astype(np.int32, copy=False), mask=codes < 0)
    array = pa.DictionaryArray.from_arrays(indices, pa.array(list(values), pa.string()))
    return array if encoded else array.dictionary_decode()


def _codes(c: Computed, lv: str, practice: np.ndarray) -> pa.Array:
    h = c.hierarchy
    idx = {"practice": practice, "locality": h.locality_of_practice[practice],
           "system": h.system_of_locality[h.locality_of_practice[practice]]}[lv]
    return text(idx, h.codes[lv])


def register_table(c: Computed) -> pa.Table:
    reg = c.register
    practice = c.practice[reg.stint_patient]
    days = np.zeros(reg.n_stints, np.int64)
    covered = reg.stint_of >= 0
    np.add.at(days, reg.stint_of[covered], reg.days[covered])
    return pa.table({
        "patient_id": c.patient_id.take(pa.array(reg.stint_patient)), "practice_code": _codes(c, "practice", practice),
        "locality_code": _codes(c, "locality", practice), "system_code": _codes(c, "system", practice),
        "category": text(reg.category, c.tariffs.category), "joined": _dates(reg.joined), "left": _dates(reg.left),
        "join_reason": text(reg.join_reason, JOIN_REASONS), "leave_reason": text(reg.leave_reason, LEAVE_REASONS),
        "days_in_year": pa.array(days), "tariff": pa.array(c.stint_rate), "budget": pa.array(c.stint_budget)})


def changes_table(register: pa.Table) -> pa.Table:
    """The register as dated changes (joins and leaves) for the DuckDB register."""
    joins = register.select(["patient_id", "joined", "join_reason"]).rename_columns(["patient_id", "change_date",
                                                                                     "reason"])
    leaves = register.filter(register["left"].is_valid()).select(["patient_id", "left", "leave_reason"])
    leaves = leaves.rename_columns(["patient_id", "change_date", "reason"])
    joins = joins.append_column("change", pa.array(["join"] * joins.num_rows, pa.string()))
    leaves = leaves.append_column("change", pa.array(["leave"] * leaves.num_rows, pa.string()))
    return pa.concat_tables([joins, leaves]).select(["patient_id", "change_date", "change", "reason"])


def tagged_table(c: Computed) -> pa.Table:
    t = c.tagged
    practice = c.practice[t.row]
    cat = rollup.month_category(c)[t.row, t.month]
    funding = (text(t.funding, t.values["funding"], True) if t.funding is not None
               else pa.array(np.full(len(t.row), FUNDING_DEFAULT, dtype=object).tolist(), pa.string()))
    return pa.table({
        "patient_id": c.patient_id.take(pa.array(t.row)),
        "practice_code": text(practice, c.hierarchy.codes["practice"], True),
        "category": text(cat, c.tariffs.category, True), "record": pa.array(t.record.astype(np.int64)),
        "spell_id": t.spell, "start_date": _dates(t.start),
        "setting": text(t.setting, t.values["setting"], True),
        "provider_code": text(t.provider, t.values["provider"], True),
        "funding": funding, "cost": pa.array(t.cost), "month": text(t.month, c.year.month_labels(), True)})


def _write_parquet(table: pa.Table, path: Path) -> None:
    """Dictionary-encoded text is written as plain Parquet strings (no Arrow schema stored), so
    every reader sees the interface's string columns whatever the writer held."""
    encoded = any(pa.types.is_dictionary(f.type) for f in table.schema)
    pq.write_table(table, path, store_schema=not encoded)


def folder_name(name: str, year: str) -> str:
    return f"budget-{name}-{year}"


def write_folder(out: Path, name: str, year: str, tables: dict[str, pa.Table], docs: dict[str, dict],
                 manifest: dict) -> Path:
    """Every table and JSON document into ``out/budget-<name>-<year>/``, swapped in whole;
    manifest.json lists each file with its SHA-256."""
    out.mkdir(parents=True, exist_ok=True)
    final = safe_child(out, folder_name(name, year))
    tmp = out / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    with folder_swapped_in(tmp, final):
        files = {}
        for table_name, table in tables.items():
            _write_parquet(table, tmp / f"{table_name}.parquet")
        for doc_name, doc in docs.items():
            (tmp / f"{doc_name}.json").write_text(json.dumps(doc, indent=2, default=str))
        for p in sorted(tmp.iterdir()):
            files[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
        manifest = {**manifest, "files": files}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    return final
