"""Reading a budget output folder (``casefind budget FILE --year``) for the statement and the BI
exports: the files and columns the interface promises, checked once, so a folder from an
older or broken run fails with one clear error instead of a KeyError deep in a template.

The cohort register and the tagged activity are record-level (pseudonymised patient ids):
``read_folder`` never loads them, so nothing identifiable can reach the statement. Only the BI
export reads ``tagged_activity.parquet``, on purpose and separately (``read_records``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from casefind.errors import DataError

COLUMNS = {
    "monthly": ("level", "unit_code", "unit_name", "parent_code", "month", "month_start", "category",
                "people", "cohort_days", "budget", "actual", "variance", "forecast", "complete"),
    "tariffs": ("category", "label", "people", "trimmed", "merged_into", "baseline_mean", "trimmed_mean",
                "uplift", "tariff", "incentive", "source"),
    "movement": ("month", "joined", "left_died", "left_deregistered", "left_no_longer_qualifies",
                 "cost_joiners", "cost_leavers", "budget_joiners", "budget_leavers"),
    "shadow": ("scope", "level", "unit_code", "unit_name", "people", "budget", "actual", "variance"),
    "simulation": ("cohort", "year", "patients", "baseline_mean", "scenario_mean", "difference",
                   "baseline_total", "scenario_total"),
    "tagged_activity": ("patient_id", "practice_code", "category", "record", "spell_id", "start_date",
                        "setting", "provider_code", "funding", "cost", "month"),
}
OPTIONAL = ("simulation",)
META_KEYS = ("budget", "year", "totals")
TOTAL_KEYS = ("people_start", "people_end", "budget", "actual", "variance")


class BudgetFolderError(DataError):
    """The folder is not a complete budget output folder (a file or column is missing)."""


@dataclass(frozen=True, eq=False)
class BudgetFolder:
    """The aggregate (count-only) contents of one budget output folder."""

    path: Path
    meta: dict
    monthly: pa.Table
    tariffs: pa.Table
    movement: pa.Table
    shadow: pa.Table
    simulation: pa.Table | None
    simulation_meta: dict | None

    def table(self, name: str) -> pa.Table | None:
        return getattr(self, name)


def _hint(folder: Path) -> str:
    return f"run `casefind budget FILE --year YEAR` again to rebuild {folder.name}"


def _read_json(path: Path, folder: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BudgetFolderError(f"{folder}: no {path.name}: this is not a budget output folder",
                                _hint(folder)) from None
    except (OSError, ValueError) as e:
        raise BudgetFolderError(f"{path}: cannot be read as JSON ({e})", _hint(folder)) from None
    if not isinstance(data, dict):
        raise BudgetFolderError(f"{path}: expected a JSON object", _hint(folder))
    return data


def _read_table(folder: Path, name: str, *, optional: bool = False) -> pa.Table | None:
    path = folder / f"{name}.parquet"
    if not path.exists():
        if optional:
            return None
        raise BudgetFolderError(f"{folder}: {path.name} is missing", _hint(folder))
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise BudgetFolderError(f"{path}: cannot be read as Parquet ({e})", _hint(folder)) from None
    missing = [c for c in COLUMNS[name] if c not in table.column_names]
    if missing:
        raise BudgetFolderError(f"{path}: missing column(s) {', '.join(missing)}", _hint(folder))
    return table.select(list(COLUMNS[name]))


def _check_meta(meta: dict, folder: Path) -> dict:
    missing = [k for k in META_KEYS if k not in meta]
    totals = meta.get("totals")
    if isinstance(totals, dict):
        missing += [f"totals.{k}" for k in TOTAL_KEYS if k not in totals]
    elif "totals" not in missing:
        missing.append("totals")
    if missing:
        raise BudgetFolderError(f"{folder / 'statement.json'}: missing {', '.join(missing)}", _hint(folder))
    return meta


def read_folder(folder: str | Path) -> BudgetFolder:
    """The statement's inputs from ``folder``; raises BudgetFolderError when it is incomplete."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BudgetFolderError(f"{folder}: no such folder", "give the folder `casefind budget` wrote "
                                "(budget-<name>-<year>)")
    meta = _check_meta(_read_json(folder / "statement.json", folder), folder)
    simulation = _read_table(folder, "simulation", optional=True)
    sim_meta = None
    if simulation is not None and (folder / "simulation.json").exists():
        sim_meta = _read_json(folder / "simulation.json", folder)
    return BudgetFolder(path=folder, meta=meta, monthly=_read_table(folder, "monthly"),
                        tariffs=_read_table(folder, "tariffs"), movement=_read_table(folder, "movement"),
                        shadow=_read_table(folder, "shadow"), simulation=simulation, simulation_meta=sim_meta)


def read_records(folder: str | Path) -> pa.Table:
    """The tagged activity: one row per record, with pseudonymised patient ids (record-level)."""
    return _read_table(Path(folder), "tagged_activity")
