"""The catalogue as plain data: what the console, the JSON and the HTML all show.

Plain dataclasses of text, numbers and lists, so that ``--json`` is the same catalogue the
tables and the HTML are made from, and a test can read it without a terminal or a browser.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

RULE, KPIS, BUDGET = "rule", "kpis", "budget"


@dataclass
class CodelistInfo:
    """One codelist a file names: its codes (counted as the run manifests count them), the
    sha256 of the CSV's bytes, and the provenance sidecar's source, release and licence."""

    name: str
    system: str
    file: str | None                  # as the rule names it; None for codes written inline
    sha256: str | None
    rows: int
    codes: int
    prefixes: int
    categories: int
    selected_categories: list[str] = field(default_factory=list)
    file_rows: int | None = None      # rows of the whole file (its sidecar's count), when category: chose some
    what: str | None = None
    source: str | None = None
    release: str | None = None
    licence: str | None = None
    date_retrieved: str | None = None
    sidecar: str | None = None        # the .provenance.json file's name, None without one
    sidecar_sha256: str | None = None
    provenance: dict | None = None    # the sidecar's recorded fields, as the run manifest keeps them
    shipped: str | None = None        # against rules/SHIPPED.json: "unchanged", "edited", "added"; None without one


@dataclass
class ParameterInfo:
    name: str
    default: object
    type: str
    description: str | None = None    # the comment after the value on its line, if any


@dataclass
class LastRun:
    """The latest run of a rule (a run manifest, else the store's registry of lists) or of a
    KPI file (the KPI history's run log), and whether the file changed since."""

    source: str                       # "manifest", "store registry" or "KPI history"
    where: str                        # the manifest, store or history it was read from
    run_id: str | None = None
    date: str | None = None           # when it ran (UTC), where recorded
    as_of: str | None = None
    periods: list[str] = field(default_factory=list)
    store_snapshot: str | None = None
    file_sha256: str | None = None    # the rule or KPI file's sha256 at that run
    changed: bool | None = None       # the file's sha256 differs now; None: the run did not record it
    ran_file: str | None = None       # the file that run read, when it is not this one
    engine: str | None = None
    status: str | None = None
    runs: int = 1                     # runs of this rule or KPI file found there


@dataclass
class Entry:
    """One rule, KPI or budget file. ``error`` (file:line:col: message) when it does not
    compile; the fields it could not work out are then left empty."""

    kind: str
    path: str
    name: str
    sha256: str
    title: str = ""
    version: str = ""
    description: str = ""
    sources: str = ""
    as_of: str | None = None
    parameters: list[ParameterInfo] = field(default_factory=list)
    codelists: list[CodelistInfo] = field(default_factory=list)
    reads: dict[str, list[str]] = field(default_factory=dict)      # table -> columns
    attributes: list[str] = field(default_factory=list)            # patient attributes used
    features: list[str] = field(default_factory=list)
    criteria: dict[str, list[str]] = field(default_factory=dict)   # include / exclude -> names
    measures: dict[str, str] = field(default_factory=dict)         # KPI name -> title
    header: dict[str, object] = field(default_factory=dict)        # budget files: their top-level values
    test_file: str | None = None
    shipped: str | None = None        # against rules/SHIPPED.json: "unchanged", "edited", "added"; None without one
    last_run: LastRun | None = None
    error: str | None = None
    hint: str | None = None
    anchor: str = ""                  # the HTML id of its section, unique in the catalogue


@dataclass
class Catalogue:
    rules_dir: str
    generated: str
    out_dir: str | None
    store: str | None
    history: str | None
    budgets_dir: str | None           # None: the project has no budgets/ folder
    shipped_from: str | None = None   # the casefind release rules/SHIPPED.json says the files were copied from
    entries: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # what could not be read (a manifest, a history)

    def of_kind(self, kind: str) -> list[Entry]:
        return [e for e in self.entries if e.kind == kind]

    def to_dict(self) -> dict:
        """The whole catalogue as JSON-ready data (``--json``)."""
        out = dataclasses.asdict(self)
        for data in out["entries"]:
            data["ok"] = data["error"] is None
        return out


KIND_LABELS = {RULE: "rule", KPIS: "KPI file", BUDGET: "budget file"}
SHIPPED_LABELS = {"unchanged": "as shipped", "edited": "edited since copied from the shipped rules",
                  "added": "added in this project"}


def status(entry: Entry) -> tuple[str, str]:
    """(what to say of the entry, a css word): does not compile, never run, changed since
    its last run, or unchanged since (when the run recorded the file's sha256)."""
    if entry.error:
        return "does not compile", "error"
    run = entry.last_run
    if entry.kind == BUDGET:
        return "listed", "none"
    if run is None:
        return "never run", "none"
    if run.changed:
        return "changed since last run", "changed"
    if run.changed is None:
        return "ran (file hash not recorded)", "ok"
    return "unchanged since last run", "ok"
