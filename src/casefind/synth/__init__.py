"""Synthetic population generator: a linked, England-like population in the input contract's
tables, deterministic per seed, vectorised so a million patients take about a minute."""
from __future__ import annotations

import datetime as dt
import json
import pathlib
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from casefind.contract import TABLES
from casefind.contract import schema as S
from casefind.errors import UsageError
from casefind.outputs import replace_dir
from casefind.synth import blocks as B
from casefind.synth import events as E
from casefind.synth import population as P
from casefind.synth import spells as SP
from casefind.synth._common import NULL
from casefind.synth.errors import inject
from casefind.synth.identities import CAPACITY, identities, pseudonyms
from casefind.synth.write import stringify, to_arrow

__all__ = ["SynthResult", "check_out_folder", "check_size", "frailty_category", "generate"]

MARKER = ".casefind-synth"  # written at the top of every synth output, so it can be replaced


def check_size(patients: int, with_identities: bool = True, inject_errors: float = 0.0,
               block: int = B.BLOCK) -> None:
    """Refuse at once a population the synthetic NHS number ranges cannot number, and errors
    injected into a population made in blocks."""
    if with_identities and patients > CAPACITY:
        raise UsageError(f"at most {CAPACITY:,} patients with identities: synthetic NHS numbers come only from the "
                         "ranges reserved for testing (999 and 998), which hold that many",
                         "add --no-identities for a larger population (the analysis tables only, "
                         "as a scale test needs)", option="--patients")
    if inject_errors > 0 and not with_identities:
        raise UsageError("it breaks identities' rows too, so it needs them",
                         "drop --no-identities, or --inject-errors", option="--inject-errors")
    if inject_errors > 0 and patients > block:
        raise UsageError(f"--inject-errors works on at most {block:,} patients (one block)",
                         "inject errors into a smaller population", option="--inject-errors")


def _is_synth_output(folder: pathlib.Path) -> bool:
    return (folder / MARKER).is_file() or (folder / "_truth" / "latent.parquet").is_file()


def check_out_folder(out: pathlib.Path) -> None:
    """OUT must be new, empty, or an earlier synth output: never a folder of someone else's
    files (it is replaced whole), nor the working folder or one above it."""
    out = pathlib.Path(out)
    resolved = out.resolve()
    if resolved == pathlib.Path.cwd().resolve() or resolved in pathlib.Path.cwd().resolve().parents:
        raise UsageError(f"{out} is the current folder (or holds it); give a new folder, e.g. --out data/",
                         option="--out")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file; give a folder", option="--out")
    if out.is_dir() and any(out.iterdir()) and not _is_synth_output(out):
        raise UsageError(f"{out} is not empty and was not written by casefind synth; nothing was changed",
                         "give a new or empty folder", option="--out")


def _remove_stale_builds(out: pathlib.Path) -> None:
    """Builds a killed synth left beside OUT hold identities: clear them."""
    for old in out.parent.glob(f".{out.name}.*"):
        if old.is_dir() and ((old / "restricted").is_dir() or (old / MARKER).is_file()):
            shutil.rmtree(old, ignore_errors=True)


def _pairs(pid_arrow, mat: np.ndarray, names: list[str], column: str) -> pa.Table:
    rows, cols = np.nonzero(mat)
    return pa.table({"patient_id": pid_arrow.take(pa.array(rows.astype(np.int64))),
                     column: pa.array(np.array(names, dtype=object)[cols].tolist(), pa.string())})


def _condition_truth(pop, pid_arrow, polypharmacy: np.ndarray) -> dict[str, pa.Table]:
    """What is really so, before coding: the QOF conditions each person has now, their eFI
    deficits (the 35 coded kinds and polypharmacy), and the frailty category those give."""
    qof = len(P.QOF)
    deficits = np.column_stack([pop.deficits, polypharmacy])
    count = deficits.sum(1)
    return {
        "conditions.parquet": _pairs(pid_arrow, pop.has[:, :qof], pop.conditions[:qof], "condition"),
        "deficits.parquet": _pairs(pid_arrow, deficits, pop.deficit_names + ["polypharmacy"], "deficit"),
        "frailty.parquet": pa.table({"patient_id": pid_arrow,
                                     "true_frailty": pa.array(frailty_category(count).tolist(), pa.string()),
                                     "true_deficits": pa.array(count.astype(np.int32))}),
    }


def _spell_truth(pop, pid_arrow, spells, revascularised: np.ndarray) -> pa.Table:
    """Per admission spell: what the generator made it as (index, readmission, transfer, or a
    follow-on TRANSFER_DAYS + 1 days after a discharge to another hospital), and by the
    definitions (spells.truth): its CIP position, the previous CIP discharge, whether it is a
    30-day emergency readmission or continues a CIP spell by a transfer, the indicators'
    exclusions (cancer, obstetrics), the chronic ACSC it was generated for, and whether it has a
    coronary revascularisation (which NHS OF 2.3.i excludes)."""
    c = spells.cols
    t = SP.truth(spells)

    def day(v):
        v = np.asarray(v, np.int32)
        return pa.array(v, mask=v == NULL).cast(pa.date32())

    return pa.table({
        "patient_id": pid_arrow.take(pa.array(c["pid"].astype(np.int64))),
        "spell_id": pa.array(spells.ids, pa.string()),
        "setting": pa.array(np.array(SP.SETTINGS)[c["setting"]].tolist(), pa.string()),
        "start_date": day(c["start"]), "end_date": day(c["end"]),
        "generated_as": pa.array(np.array(SP.KINDS)[c["kind"]].tolist(), pa.string()),
        "cips_position": pa.array(t["cips_position"]),
        "previous_discharge": day(t["previous_discharge"]),
        "readmission_30d": pa.array(t["readmission_30d"]),
        "is_transfer": pa.array(t["is_transfer"]),
        "excluded": pa.array(t["excluded"].tolist(), pa.string()),
        "acsc": pa.array(SP.acsc(pop, spells).tolist(), pa.string()),
        "revascularised": pa.array(revascularised),
    })


def frailty_category(deficits: np.ndarray) -> np.ndarray:
    """eFI category of a deficit count (Clegg et al. 2016: fit <= 0.12, mild <= 0.24,
    moderate <= 0.36, severe above), as the frail rule writes it."""
    efi = np.asarray(deficits) / 36
    return np.select([efi > 0.36, efi > 0.24, efi > 0.12], ["severe", "moderate", "mild"], "fit")


@dataclass
class SynthResult:
    out: pathlib.Path
    rows: dict = field(default_factory=dict)
    injected: dict = field(default_factory=dict)
    seconds: float = 0.0


def generate(patients: int, seed: int, out: pathlib.Path, *, inject_errors: float = 0.0,
             fmt: str = "parquet", as_of: dt.date = dt.date(2026, 10, 31),
             progress: Callable[[str], None] | None = None, with_identities: bool = True,
             block: int = B.BLOCK) -> SynthResult:
    """The population in OUT, built beside it and swapped in whole. More than ``block``
    patients are made a block at a time (synth.blocks), each block's rows appended to the
    tables' files, so that memory is bounded by a block."""
    if fmt not in ("parquet", "csv"):
        raise ValueError("fmt must be 'parquet' or 'csv'")
    if patients < 1:
        raise ValueError("patients must be at least 1")
    check_size(patients, with_identities, inject_errors, block)
    out = pathlib.Path(out).absolute()
    check_out_folder(out)
    t0 = time.perf_counter()
    say = progress or (lambda s: None)
    out.parent.mkdir(parents=True, exist_ok=True)  # the build sits beside OUT, so the swap is a rename
    _remove_stale_builds(out)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _start_build(tmp, with_identities)
        files = B.TableFiles(fmt)
        result = SynthResult(out=out)
        try:
            blocks = B.plan(patients, seed, block)
            area, spells_before = P.Area(), 0
            for b in blocks:
                tell = say if len(blocks) == 1 else (lambda s, b=b: say(f"block {b.index + 1}/{len(blocks)}: {s}"))
                area, spells_before = _generate_block(tmp, files, b, seed, area, spells_before, as_of, fmt,
                                                      inject_errors, with_identities, result, tell)
        finally:
            files.close()
        _swap_in(tmp, out)
        result.seconds = time.perf_counter() - t0
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when the swap succeeded


def _start_build(tmp: pathlib.Path, with_identities: bool) -> None:
    if with_identities:
        (tmp / "restricted").mkdir()
    (tmp / "_truth").mkdir()
    (tmp / MARKER).write_text("written by casefind synth; `casefind synth --out` may replace this folder\n")


def _generate_block(tmp, files: B.TableFiles, b: B.Block, seed: int, area: P.Area, spells_before: int, as_of,
                    fmt: str, inject_errors: float, with_identities: bool, result: SynthResult, say
                    ) -> tuple[P.Area, int]:
    """One block's tables and truth appended to the files; where the next block's practices
    and spell numbers start."""
    A = (as_of - dt.date(1970, 1, 1)).days
    say("population")
    pop = P.build(b.n, b.seed, A, area)
    say("conditions")
    P.add_conditions(pop, b.seed)
    P.add_risk(pop, b.seed)
    pids = pseudonyms(np.arange(b.first, b.first + b.n), seed)
    pid_arrow = pa.array(pids, pa.string())
    prac_codes = np.array(pop.practices["practice_code"])
    as_strings = fmt == "csv" or inject_errors > 0
    tables, truth = _source_tables(pop, pids, pid_arrow, prac_codes, b.seed, b.numbering(seed, spells_before),
                                   with_identities, as_strings, inject_errors > 0, say)
    if inject_errors > 0:
        say("errors")
        tables, result.injected = _with_errors(tables, pop, pids, b.seed, inject_errors)
    say("write")
    ext = "csv" if fmt == "csv" else "parquet"
    for name in list(tables):
        t = tables.pop(name)
        files.add(tmp / ("restricted" if TABLES[name].restricted else "") / f"{name}.{ext}", t)
        result.rows[name] = result.rows.get(name, 0) + t.num_rows
    for name, t in _truth_tables(pop, pid_arrow, truth).items():
        files.add(tmp / "_truth" / name, t)
    (tmp / "_truth" / "injected.json").write_text(json.dumps(result.injected, indent=1, sort_keys=True))
    return pop.after, spells_before + len(truth.spells.ids)


@dataclass
class _Truth:
    """What the generator knows that the source tables only imply, kept for the truth files."""
    spells: object
    revascularised: np.ndarray
    polypharmacy: np.ndarray


def _source_tables(pop, pids, pid_arrow, prac_codes, seed, numbering: B.Numbering, with_identities: bool,
                   as_strings: bool, numbers_as_strings: bool, say) -> tuple[dict[str, pa.Table], _Truth]:
    """Every table of the input contract, in the order the generator's random streams
    are drawn, as Arrow (strings throughout for CSV or error injection). A block of a larger
    population numbers its NHS numbers and spells as ``numbering`` says."""
    tables: dict[str, pa.Table] = {}

    def emit(name, cols):
        t = to_arrow(name, cols, pid_arrow)
        tables[name] = stringify(t, numbers=numbers_as_strings) if as_strings else t

    say("patients")
    emit("patients", {
        "patient_id": np.arange(len(pids), dtype=np.int32), "birth_date": pop.birth,
        "sex": (list(S.SEX), pop.sex), "practice_code": prac_codes[pop.practice],
        "registration_start": pop.reg_start, "registration_end": pop.reg_end, "death_date": pop.death,
        "imd_decile": pop.imd, "ethnicity": (list(S.ETHNIC_CATEGORIES), pop.eth),
        "lsoa_code": np.char.add("ZZ01", np.char.zfill(pop.lsoa.astype("U7"), 6)),
    })
    emit("practices", {k: np.array(pop.practices[k]) for k in S.PRACTICES.names})
    say("activity")
    spells = SP.build(pop, seed, numbering.spells)
    emit("activity", E.activity(pop, seed, spells))
    say("diagnoses")
    emit("diagnoses", E.merge(E.primary_diagnoses(pop, seed), SP.hospital_diagnoses(pop, seed, spells)))
    say("procedures")
    procs = SP.procedures(pop, seed, spells)
    emit("procedures", procs)
    revascularised = SP.revascularised(spells, procs)
    del procs
    say("medications")
    plan = E.medication_plan(pop, seed)
    emit("medications", E.medications(pop, seed, plan))
    polypharmacy = plan[1].sum(1) >= 5
    del plan
    say("observations")
    emit("observations", E.observations(pop, seed))
    emit("experience", E.experience(pop, seed))
    say("registers")
    emit("registers", E.registers(pop, seed))
    emit("opt_outs", E.opt_outs(pop, seed))
    if with_identities:
        say("identities")
        emit("identities", identities(pids, prac_codes[pop.practice], seed, numbering.nhs))
    return tables, _Truth(spells, revascularised, polypharmacy)


def _with_errors(tables: dict[str, pa.Table], pop, pids, seed: int, rate: float) -> tuple[dict, dict[str, int]]:
    """The tables with contract-breaking rows appended, and how many of each were made."""
    index = {p: i for i, p in enumerate(pids)}
    r = np.random.Generator(np.random.PCG64([seed, 98]))
    dead = np.flatnonzero(pop.death != NULL)

    def life(col):
        ix = np.array([index.get(p, 0) for p in col.to_pylist()], np.int64)
        return pop.birth[ix].astype(np.int64), pop.death[ix].astype(np.int64)

    def dead_rows(k):
        if len(dead) == 0:
            return [], np.zeros(0, np.int64)
        ix = dead[r.integers(0, len(dead), k)]
        return pids[ix], pop.death[ix].astype(np.int64)

    return inject(tables, rate, seed, lambda i: pseudonyms(i, seed), life, dead_rows)


def _truth_tables(pop, pid_arrow, truth: _Truth) -> dict[str, pa.Table]:
    """The _truth/ tables: latent risk, the conditions, the frailty and the spells."""
    traj = np.array(["stable", "rising", "falling"])[pop.trajectory]
    return {"latent.parquet": pa.table({"patient_id": pid_arrow, "latent_risk": pa.array(pop.risk.astype(np.float64)),
                                        "trajectory": pa.array(traj.tolist(), pa.string())}),
            **_condition_truth(pop, pid_arrow, truth.polypharmacy),
            "spells.parquet": _spell_truth(pop, pid_arrow, truth.spells, truth.revascularised)}


def _swap_in(tmp: pathlib.Path, out: pathlib.Path) -> None:
    """Replace ``out`` by the finished build; the old folder goes only once the new one is in place."""
    replace_dir(tmp, out)
