"""Every command, driven with generated bad arguments, paths and files, as a hurried or
hostile user would: never a traceback (nor casefind's "failed unexpectedly", which is a
traceback in disguise), only the documented exit codes, and nothing written outside the
folders the command was given."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casefind.cli import main
from casefind_testdata import GOOD, write_source

REPO = Path(__file__).resolve().parents[2]
EXIT_CODES = {0, 1, 2, 3, 4, 5}

# What each command takes; values come from the pools below.
COMMANDS = {
    ("synth",): ["--patients", "--seed", "--out", "--format", "--inject-errors", "--as-of"],
    ("ingest",): ["ARG", "--store", "--identities", "--strict", "--shards"],
    ("info",): ["--store", "--json"],
    ("run",): ["ARG", "--store", "--as-of", "--param", "--out", "--engine", "--allow-partial"],
    ("check",): ["ARG", "--param"],
    ("explain",): ["ARG", "--store", "--as-of"],
    ("review", "import"): ["ARG", "--store", "--reviewer", "--on"],
    ("review", "record"): ["--store", "--rule", "--patient", "--decision", "--on", "--note"],
    ("review", "show"): ["--store", "--rule", "--json"],
    ("kpi",): ["ARG", "--store", "--period", "--from", "--to", "--history", "--param", "--engine", "--export",
               "--drop-period", "--kpis", "--allow-partial"],
    ("report",): ["--store", "--period", "--history", "--kpis", "--out", "--baseline", "--rebase", "--export"],
    ("budget",): ["ARG", "--year", "--store", "--out", "--history", "--engine", "--allow-partial"],
    ("budget", "simulate"): ["ARG", "--scenario", "--years", "--year", "--store", "--out", "--as-of", "--engine"],
    ("budget", "statement"): ["ARG", "--html", "--export", "--format"],
    ("dataset",): ["ARG", "--output", "--store", "--as-of", "--columns", "--param", "--engine", "--opt-out",
                   "--allow-partial"],
    ("codelists", "check"): ["ARG", "--store", "--json"],
    ("spark", "ingest"): ["ARG", "--store", "--strict"],  # no --shards: refused before a session starts
    ("spark", "run"): ["ARG", "--store", "--as-of", "--out", "--engine"],  # no sharded store among the files:
    ("spark", "kpi"): ["ARG", "--store", "--period", "--history"],        # refused before a session starts
    ("spark", "dataset"): ["ARG", "--output", "--store", "--columns"],
    ("spark", "budget"): ["ARG", "--year", "--store", "--out"],
    ("spark", "diagnose"): ["ARG", "--store", "--as-of", "--out", "--json"],
    ("spark", "evaluate"): ["ARG", "--store", "--out", "--json"],
    ("spark", "quality"): ["--store", "--json"],
}
FLAGS = {"--strict", "--json", "--allow-partial"}

TEXT = ["", " ", ".", "..", "-", "--", "0", "-1", "1e400", "inf", "nan", "abc", "é", "ø" * 300,
        "x" * 5000, "=cmd|' /C calc'!A0", "../../../evil_out/pwn", "/", "Z00001", "frail", "fral",
        "min_age=seventy", "n=inf", "as_of=2030-01-31", "=", "a=b=c", "2026-10", "2026-13", "0000-01",
        "9999-12", "2019-01", "12m-to-2026-10", "2026-Q5", "2026-10-31", "31/10/2026", "2030-01-31",
        "2026-02-30", "declined", "accepted", "maybe", "native", "duckdb", "csv", "parquet", "triple_aim",
        "out.parquet", "out.csv", "out.xlsx", "none", "2026-27", "2025-26", "2027-29", "ltc_year_of_care",
        "fewer_emergency_admissions", "exclude-type1", "efi,age", "nosuch,efi",
        "999999999999999999999", "0.6", "50000000"]


def _files(root: Path) -> dict[str, Path]:
    """Hostile and ordinary files and folders the arguments may point at."""
    f = {}
    root.mkdir(parents=True, exist_ok=True)
    f["empty_file"] = root / "empty.yml"
    f["empty_file"].write_text("")
    f["binary"] = root / "binary.csv"
    f["binary"].write_bytes(b"\xff\xfe\x00garbage\x80\x81")
    f["cp1252"] = root / "cp1252.csv"
    f["cp1252"].write_bytes("run_id;rule;as_of;practice;patient_id;decision\n1;frail;31/10/2026;Z00001;p1;d\xe9clin\n"
                            .encode("cp1252"))
    f["junk_csv"] = root / "junk.csv"
    f["junk_csv"].write_text("a,a,b\n1,2\n3,4,5,6\n")
    f["yaml_list"] = root / "list.yml"
    f["yaml_list"].write_text("- 1\n- 2\n")
    f["bad_rule"] = root / "bad_rule.yml"
    f["bad_rule"].write_text("rule: ../clobber\nas_of: 2026-10-31\npopulation: age >= \n")
    f["frail"] = REPO / "rules" / "frail.yml"
    f["kpis"] = REPO / "rules" / "kpis" / "triple_aim.yml"
    f["dir"] = root / "a_dir"
    f["dir"].mkdir(exist_ok=True)
    f["missing"] = root / "missing" / "nowhere"
    f["new_out"] = root / "new_out"
    return f


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A tiny store as the demo workspace (so commands without --store stay fast) and a
    working folder whose siblings must stay untouched."""
    top = tmp_path_factory.mktemp("cli_fuzz")
    home = top / "home"
    source = write_source(top / "source", GOOD)
    runner = CliRunner()
    env = {"CASEFIND_HOME": str(home)}
    store = home / "demo" / "store"
    r = runner.invoke(main, ["ingest", str(source), "--store", str(store),
                             "--identities", str(home / "demo" / "identities")], env=env)
    assert r.exit_code == 0, r.output
    work = top / "work"
    files = _files(work / "files")
    files["store"] = store
    files["source"] = source
    return {"top": top, "work": work, "env": env, "files": files}


def _value(draw, files: dict[str, Path], option: str):
    kind = draw(st.sampled_from(["text", "file", "file", "int"]))
    if kind == "file":
        return str(draw(st.sampled_from(sorted(files.values()))))
    if kind == "int":
        return str(draw(st.integers(min_value=-10**20, max_value=10**20)))
    return draw(st.sampled_from(TEXT) | st.text(max_size=20).filter(lambda s: "\x00" not in s))


@st.composite
def invocations(draw, files):
    cmd = draw(st.sampled_from(sorted(COMMANDS)))
    opts = draw(st.lists(st.sampled_from(COMMANDS[cmd]), max_size=5, unique=True))
    args = list(cmd)
    for o in opts:
        if o == "ARG":
            args.append(_value(draw, files, o))
        elif o in FLAGS:
            args.append(o)
        else:
            args += [o, _value(draw, files, o)]
    return args


def _snapshot(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_no_command_ever_ends_in_a_traceback(sandbox, data):
    files = sandbox["files"]
    args = data.draw(invocations(files))
    before_top = {p.name for p in sandbox["top"].iterdir()}
    cwd = os.getcwd()
    os.chdir(sandbox["work"])
    try:
        r = CliRunner().invoke(main, args, env=sandbox["env"], catch_exceptions=True)
    finally:
        os.chdir(cwd)
    out = r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), (args, out, repr(r.exception))
    assert "Traceback" not in out and "failed unexpectedly" not in out, (args, out)
    assert r.exit_code in EXIT_CODES, (args, r.exit_code, out)
    assert {p.name for p in sandbox["top"].iterdir()} <= before_top | {"work"}, args
    assert not list(sandbox["top"].rglob("pwn")), args
    assert not (sandbox["top"] / "evil_out").exists() and not (REPO / "evil_out").exists(), args
