"""``casefind init DIR``: an analyst's project folder, made from the rules shipped with casefind.

The folder gets a ``casefind.toml`` (every setting, with its default, commented), a copy of
the shipped rules, their test patients, codelists (each with its provenance sidecar) and KPI
files, a ``rules/SHIPPED.json`` saying which casefind release each file came from and its
sha256 (so the catalogue can tell an edited rule from a shipped one), a README and a
``.gitignore`` that keeps data out of git. It is built beside DIR and renamed into place,
so a failed init leaves nothing half made.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from casefind import __version__
from casefind.errors import UsageError
from casefind.project import PROJECT_FILE, SETTINGS, kpi_files, rule_files, shipped_rules

SHIPPED_MANIFEST = "SHIPPED.json"
# What the commented line of a setting with no fixed default shows (an example to edit).
EXAMPLES = {"store": '"data/store"', "identities": '"data/store-identities"', "history": '"kpi/history.duckdb"',
            "rules": '"rules"', "suppress_below": "8", "round_to": "5"}

GITIGNORE = """\
# Data never goes into git: stores, extracts, identities, run outputs, KPI histories.
/store/
/store-identities/
/data/
/out/
restricted/
*.duckdb
*.duckdb.wal
*.parquet
*.arrow
*.feather
# Reports made from data (they hold counts per practice)
kpi-pack-*.html
quality-*.html
"""


@dataclass(frozen=True)
class InitResult:
    root: Path
    files: int
    rules: list[str]
    kpi_files: list[str]
    codelists: int


def init_project(target: Path, *, store: Path | None = None, name: str | None = None) -> InitResult:
    """Make a project folder at ``target`` (new, or an empty folder)."""
    _check_target(target)
    name = name or target.resolve().name
    parent = target.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.init-", dir=parent))
    try:
        shipped = _copy_rules(work / "rules")
        (work / PROJECT_FILE).write_text(project_toml(name, store), encoding="utf-8")
        (work / "README.md").write_text(project_readme(name), encoding="utf-8")
        (work / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
        if target.exists():
            target.rmdir()  # empty, checked above
        os.replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    rules = target / "rules"
    return InitResult(target, len(shipped) + 3, [p.stem for p in rule_files(rules)],
                      [p.stem for p in kpi_files(rules)],
                      len(list((rules / "codelists").rglob("*.csv"))))


def _check_target(target: Path) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{target} already exists and is not an empty folder; casefind init never "
                         "writes into one", "give a new folder name, e.g. casefind init my-project")


def _copy_rules(dest: Path) -> dict[str, str]:
    """Copy the shipped rules (every file but caches) and record where each came from."""
    source = shipped_rules()
    files: dict[str, str] = {}
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if not path.is_file() or "__pycache__" in rel.parts or rel.name.startswith("."):
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / rel)
        files[rel.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = {"casefind_version": __version__, "copied_on": dt.date.today().isoformat(),
                "note": "files copied from the rules shipped with casefind; a file whose sha256 differs "
                        "has been edited in this project. Codelists carry their own .provenance.json.",
                "files": files}
    (dest / SHIPPED_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return files


def project_toml(name: str, store: Path | None) -> str:
    """casefind.toml: every setting with its default, commented, so the file documents itself."""
    lines = [f"# casefind project settings (casefind {__version__}). Paths are relative to this file.",
             "# Precedence for every setting: a command's flag > CASEFIND_<NAME> in the environment",
             "# > this file > the default. `casefind info` shows which was used. See docs/projects.md.",
             "", "[project]", f"name = {json.dumps(name)}"]
    section = None
    for setting in SETTINGS.values():
        if setting.section != section:
            section = setting.section
            lines += ["", f"[{section}]"]
        lines.append(f"# {setting.help} (${setting.env})")
        if setting.name == "store" and store is not None:
            lines.append(f"store = {json.dumps(str(store.resolve()))}")
        else:
            lines.append(f"# {setting.name} = {EXAMPLES.get(setting.name) or json.dumps(str(setting.default))}")
    return "\n".join(lines) + "\n"


def project_readme(name: str) -> str:
    return f"""# {name}

A casefind project, made with `casefind init` (casefind {__version__}).

- `casefind.toml`: the settings (store, output folder, KPI history, engine, as_of, disclosure).
  Without a store set, commands use casefind's demo workspace (synthetic data).
- `rules/`: the rules, with their test patients (`*.test.yml`), codelists (each with a
  `.provenance.json`: source, release, licence) and KPI files (`rules/kpis/`), copied from
  the rules shipped with casefind; `rules/SHIPPED.json` records the release and each file's
  sha256, so you can see what you have changed.

Every command reads `casefind.toml` from this folder or any subfolder:

```sh
casefind info                   # the settings in force and where each came from
casefind run frail              # a review list per practice, in out/
casefind test                   # every rule against its declared test patients, on both engines
casefind catalogue --html       # what this project holds: rules, codelists, KPI files, last runs
casefind quality --html         # the data quality of the store
casefind kpi triple_aim --period 2026-10
```

Data stays out of git (see `.gitignore`): never commit a store, an extract or a run's lists.
"""
