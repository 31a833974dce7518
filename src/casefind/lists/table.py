"""The review list as one Arrow table, built column by column from the listed patients' values.

Columns, in order: run_id, rule, as_of, practice, locality, patient_id, rank, segment (when
the rule has segments), the output columns as published (output: round:), then per include
criterion its flag and its evidence (when the rule shows evidence), per exclusion its flag,
the reason sentences, and the review columns the clinician fills in (empty, text).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from casefind.lists.reasons import Describer
from casefind.rules.compile import CompiledRule, rounded

# Empty on the list; the reviewing clinician fills them in and `casefind review import` reads them.
REVIEW_COLUMNS = ("decision", "decided_on", "reviewer", "note")


def list_table(rule: CompiledRule, listed: pa.Table, rank: np.ndarray, who: dict[str, pa.Array], run_id: str,
               evidence: dict[str, dict[int, list[str]]]) -> pa.Table:
    """``listed``: the values of the listed patients, in list order; ``who``: their practice,
    locality and patient_id; ``evidence``: per include criterion, events per store index."""
    n = listed.num_rows
    cols: dict[str, pa.Array] = {
        "run_id": pa.array([run_id] * n, pa.string()), "rule": pa.array([rule.name] * n, pa.string()),
        "as_of": pa.array([rule.as_of] * n, pa.date32()), **who, "rank": pa.array(rank, pa.int64())}
    if rule.segments:
        cols["segment"] = listed.column("segment")
    for c in rule.output_columns:  # as published (HFRS 1 place, eFI 2); ranking used the full value
        col = listed.column(c)
        places = rule.output_round.get(c)
        cols[c] = col if places is None else pa.array([rounded(v, places) for v in col.to_pylist()], col.type)
    patients = listed.column("patient").to_pylist()
    met = {name: _flag(listed, f"include:{name}") for name, _ in rule.include}
    for name, _ in rule.include:
        cols[f"include:{name}"] = pa.array(met[name], pa.bool_())
        if rule.evidence:
            found = evidence[name]
            cols[f"evidence:{name}"] = pa.array(["; ".join(found.get(p, [])) if m else None
                                                 for p, m in zip(patients, met[name])], pa.string())
    for name, _ in rule.exclude:
        cols[f"exclude:{name}"] = pa.array(_flag(listed, f"exclude:{name}"), pa.bool_())
    cols["reasons"] = pa.array(reasons(rule, listed, met), pa.string())
    for c in REVIEW_COLUMNS:  # text even while every cell is empty
        cols[c] = pa.nulls(n, pa.string())
    return pa.table(cols)


def reasons(rule: CompiledRule, listed: pa.Table, met: dict[str, np.ndarray]) -> list[str]:
    """Per listed patient, the sentences of the criteria they meet, joined by " | "."""
    describer = Describer(rule.features)
    params = {k: v.value for k, v in rule.parameters.items()}
    per_patient: list[list[str]] = [[] for _ in range(listed.num_rows)]
    for name, node in rule.include:
        template = rule.reasons.get(name)
        reads = describer.reads(node, template)
        known = {k: _published(rule, k, listed.column(k).to_pylist()) for k in reads if k in listed.column_names}
        for i in np.flatnonzero(met[name]):
            row = {**{k: params.get(k) for k in reads if k not in known}, **{k: v[i] for k, v in known.items()}}
            per_patient[i].append(describer.sentence(name, node, row, template))
    return [" | ".join(s) for s in per_patient]


def _published(rule: CompiledRule, name: str, values: list) -> list:
    """A column's values as the list publishes them (output: round:), so that a reason and
    its column agree ("eFI 0.25" beside 0.25)."""
    places = rule.output_round.get(name)
    return values if places is None else [rounded(v, places) for v in values]


def _flag(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
