"""An analyst's project: the settings in ``casefind.toml``, the environment and the flags,
and where each setting's value came from.

Precedence, for every setting: a command's flag > ``CASEFIND_<NAME>`` in the environment >
``casefind.toml`` (in the working directory or the nearest parent that has one) > the
default. Paths in ``casefind.toml`` are relative to the folder that holds it, so a project
works from any of its subfolders; paths from a flag or the environment are relative to the
working directory, as a shell user expects; inside a project, a default path (out/) is the
project's. ``casefind info`` prints the table.
"""
from __future__ import annotations

import datetime as dt
import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from casefind.errors import EXIT_USAGE, CasefindError, UsageError

PROJECT_FILE = "casefind.toml"
TEST_SUFFIX = ".test.yml"


class ProjectFileError(CasefindError):
    """casefind.toml is not valid TOML, or names a setting or value casefind does not know."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Setting:
    """One project setting: its key in ``casefind.toml`` (``[section] key``), how its text
    is read, and its default (None: the command works one out, as the help says)."""

    section: str
    name: str
    kind: str  # "path", "engine", "as_of" or "count"
    default: object
    help: str

    @property
    def env(self) -> str:
        return f"CASEFIND_{self.name.upper()}"

    @property
    def key(self) -> str:
        return f"[{self.section}] {self.name}"


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("paths", "store", "path", None, "population store (default: the demo workspace)"),
    Setting("paths", "identities", "path", None, "restricted identity store (default: STORE-identities)"),
    Setting("paths", "out", "path", Path("out"), "folder runs write their lists to"),
    Setting("paths", "history", "path", None, "KPI history database (default: STORE/kpi/history.duckdb)"),
    Setting("paths", "rules", "path", None,
            "rules run by name (default: the project's rules/ folder, else the rules shipped with casefind)"),
    Setting("defaults", "engine", "engine", "native", "engine that evaluates rules and KPIs"),
    Setting("defaults", "as_of", "as_of", "rule",
            "evaluation date: 'rule' (each rule's own as_of), 'latest' (the end of the store's data) or YYYY-MM-DD"),
    Setting("disclosure", "suppress_below", "count", None,
            "KPI counts from 1 to this − 1 are suppressed (default: the KPI file's, else 8)"),
    Setting("disclosure", "round_to", "count", None,
            "KPI counts are rounded to a multiple of this (default: the KPI file's, else 5)"),
)}


@dataclass(frozen=True)
class Value:
    value: object
    source: str  # "flag", "environment", "casefind.toml" (Project.file says which) or "default"


@dataclass(frozen=True)
class Project:
    """The settings in force for one command, each with where it came from."""

    file: Path | None
    values: Mapping[str, Value] = field(default_factory=dict)

    @property
    def root(self) -> Path | None:
        return self.file.parent if self.file else None

    def get(self, name: str):
        return self.values[name].value

    def source(self, name: str) -> str:
        return self.values[name].source

    def rows(self) -> list[dict]:
        """Each setting, its value and where it came from (``casefind info``)."""
        return [{"setting": s.key, "value": _text(self.values[n].value), "source": self.values[n].source,
                 "environment": s.env} for n, s in SETTINGS.items()]


def _text(value) -> str | None:
    return None if value is None else str(value)


def find_project_file(start: Path | None = None) -> Path | None:
    """casefind.toml in ``start`` (the working directory) or its nearest parent."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / PROJECT_FILE
        if candidate.is_file():
            return candidate
    return None


def load(flags: Mapping[str, object] | None = None, *, cwd: Path | None = None,
         environ: Mapping[str, str] | None = None) -> Project:
    """The settings for a command: ``flags`` holds the command's own options (None: not given)."""
    flags = flags or {}
    environ = os.environ if environ is None else environ
    unknown = set(flags) - set(SETTINGS)
    if unknown:
        raise ValueError(f"not settings: {sorted(unknown)}")  # a bug in a command, not the user's
    file = _file_from(environ, cwd)
    table = _read_table(file) if file else {}
    values = {}
    for name, setting in SETTINGS.items():
        values[name] = _resolve(setting, flags.get(name), environ.get(setting.env), table, file)
    return Project(file, values)


def _file_from(environ: Mapping[str, str], cwd: Path | None) -> Path | None:
    named = environ.get("CASEFIND_PROJECT")
    if named:
        path = Path(named)
        path = path / PROJECT_FILE if path.is_dir() else path
        if not path.is_file():
            raise ProjectFileError(f"CASEFIND_PROJECT names {named}, which has no {PROJECT_FILE}",
                                   "unset CASEFIND_PROJECT, or point it at a project folder (casefind init)")
        return path.resolve()
    return find_project_file(cwd)


def _resolve(setting: Setting, flag, env_text: str | None, table: dict, file: Path | None) -> Value:
    if flag is not None:
        return Value(_parse(setting, flag, f"--{setting.name.replace('_', '-')}", Path.cwd()), "flag")
    if env_text not in (None, ""):
        return Value(_parse(setting, env_text, setting.env, Path.cwd()), "environment")
    section = table.get(setting.section, {})
    if setting.name in section:
        return Value(_parse(setting, section[setting.name], f"{file}: {setting.key}", file.parent),
                     PROJECT_FILE)
    if setting.kind == "path" and setting.default is not None and file is not None:
        return Value(file.parent / setting.default, "default")  # a project's out/ is the project's
    return Value(setting.default, "default")


def _parse(setting: Setting, raw, where: str, base: Path):
    """A setting's text (or TOML value) as the value commands use; a bad one says where it is."""
    if setting.kind == "path":
        if isinstance(raw, Path):
            return raw
        if not isinstance(raw, str) or not raw.strip():
            raise ProjectFileError(f"{where}: {setting.name} must be a path (text); got {raw!r}")
        path = Path(raw).expanduser()
        return path if path.is_absolute() else base / path
    if setting.kind == "count":
        return _count(setting, raw, where)
    if setting.kind == "engine":
        return _engine(raw, where)
    return _as_of(raw, where)


def _count(setting: Setting, raw, where: str) -> int:
    try:
        value = int(raw) if not isinstance(raw, bool) and str(raw).strip().lstrip("-").isdigit() else None
    except (TypeError, ValueError):
        value = None
    if value is None or value < 0:
        raise ProjectFileError(f"{where}: {setting.name} must be a whole number, 0 or more; got {raw!r}",
                               "e.g. 8 to suppress counts of 1-7 and 5 to round to fives (NHS Digital's HES rules)")
    return value


def _engine(raw, where: str) -> str:
    from casefind.engines.base import ENGINES

    if raw not in ENGINES:
        close = difflib.get_close_matches(str(raw), list(ENGINES), n=1)
        raise ProjectFileError(f"{where}: engine {raw!r} is not one of {', '.join(ENGINES)}",
                               f"did you mean {close[0]!r}?" if close else None)
    return raw


def _as_of(raw, where: str) -> str:
    text = raw.isoformat() if isinstance(raw, dt.date) else str(raw).strip()
    if text in ("rule", "latest"):
        return text
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ProjectFileError(f"{where}: as_of {raw!r} is not 'rule', 'latest' or a date (YYYY-MM-DD)",
                               "use 'rule', 'latest' or a date such as 2026-10-31") from None


def _read_table(file: Path) -> dict:
    try:
        table = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ProjectFileError(f"{file}: not valid TOML: {e}", "see docs/projects.md for the format") from None
    known_sections = {s.section for s in SETTINGS.values()} | {"project"}
    for section, body in table.items():
        if section not in known_sections or not isinstance(body, dict):
            raise ProjectFileError(f"{file}: unknown section [{section}]", _did_you_mean(section, known_sections))
        if section == "project":
            continue
        names = {s.name for s in SETTINGS.values() if s.section == section}
        for key in body:
            if key not in names:
                have = ", ".join(sorted(names))
                raise ProjectFileError(f"{file}: [{section}] has no setting {key!r} (it has {have})",
                                       _did_you_mean(key, names))
    return table


def _did_you_mean(word: str, options) -> str | None:
    close = difflib.get_close_matches(word, sorted(options), n=1)
    return f"did you mean {close[0]!r}?" if close else None


# --- rules: the project's, and those shipped with casefind ---------------------------------

def shipped_rules() -> Path:
    """The rules, codelists and KPI files installed with casefind (package data)."""
    from importlib.resources import files

    return Path(str(files("casefind") / "shipped"))


def rules_folder(project: Project) -> Path:
    """Where rules named without a path are found: the ``rules`` setting, else the project's
    rules/ folder, else the shipped rules."""
    configured = project.get("rules")
    if configured is not None:
        return configured
    if project.root is not None and (project.root / "rules").is_dir():
        return project.root / "rules"
    return shipped_rules()


def rule_files(folder: Path) -> list[Path]:
    """The rule files in a folder (not their test files), sorted by name."""
    return sorted(p for p in folder.glob("*.yml") if not p.name.endswith(TEST_SUFFIX))


def kpi_files(folder: Path) -> list[Path]:
    return sorted((folder / "kpis").glob("*.yml"))


def resolve_rule(text: str | Path, project: Project, *, kind: str = "rule") -> Path:
    """A rule (or KPI file) given as a path, or by name: ``frail`` is ``frail.yml`` in the
    project's rules folder, else in the shipped rules (KPI files: in their kpis/ folders)."""
    path = Path(text)
    if path.exists():
        return path
    if path.suffix in (".yml", ".yaml") or len(path.parts) > 1:
        raise UsageError(f"no such {kind} file: {path}",
                         f"give the path of a .yml file, or a {kind} name from the rules folder (e.g. frail)")
    name = str(text)
    if not name.isidentifier():
        raise UsageError(f"{name!r} is neither a file nor a {kind} name", "give a path to a .yml file, or a name")
    folders = [rules_folder(project), shipped_rules()]
    for folder in dict.fromkeys(folders):
        candidate = folder / ("kpis" if kind == "KPI file" else "") / f"{name}.yml"
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for f in folders for p in (kpi_files(f) if kind == "KPI file" else rule_files(f))})
    raise UsageError(f"no {kind} named {name!r} in {folders[0]}" + ("" if folders[0] == folders[1] else
                     " or among the shipped rules"),
                     " ".join(filter(None, [_did_you_mean(name, known), f"({kind}s: {', '.join(known)})"])))
