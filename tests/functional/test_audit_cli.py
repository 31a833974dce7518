"""`casefind audit verify | show | export` on a store's audit log."""
from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from casefind.audit import record
from casefind.audit.log import LOG
from casefind.cli import CasefindGroup, main
from casefind.cli_audit import command


def _cli(*args):
    """The real command line once `audit` is registered in cli.py; until then the same group
    under the same error handling."""
    group = main if "audit" in main.commands else CasefindGroup("casefind", commands={"audit": command})
    return CliRunner().invoke(group, ["audit", *map(str, args)], catch_exceptions=False)


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    for i, (user, action) in enumerate([("ann", "sign_in"), ("ann", "view_list"), ("bob", "view_patient"),
                                        ("ann", "decide"), ("bob", "sign_out")]):
        record(root, user=user, role="clinician", action=action, practice="Z00001" if user == "ann" else "Z00002",
               patient_id=f"p{i}" if action in ("view_patient", "decide") else None,
               patient_ids=["p1", "p2"] if action == "view_list" else None)
    return root


def test_verify_intact_prints_head(store):
    r = _cli("verify", "--store", store)
    assert r.exit_code == 0, r.output
    assert r.output.startswith("audit log intact: 5 entries; head 5:")
    r = _cli("verify", "--store", store, "--json")
    out = json.loads(r.output)
    assert out["ok"] is True and out["entries"] == 5 and out["problems"] == []
    head = out["head"]
    assert _cli("verify", "--store", store, "--anchor", head).exit_code == 0


def test_verify_lists_every_problem_and_exits_1(store):
    log = store / "audit" / LOG
    lines = log.read_text().splitlines()
    edited = json.loads(lines[1])
    edited["user"] = "mallory"
    lines[1] = json.dumps(edited)
    del lines[3]  # seq 4 removed too
    log.write_text("\n".join(lines) + "\n")
    r = _cli("verify", "--store", store)
    assert r.exit_code == 1
    assert "seq 2: edited" in r.output and "seq 4: removed" in r.output
    assert "error: the audit log's chain is broken: 2 problem(s)" in r.output
    out = json.loads(_cli("verify", "--store", store, "--json").stdout)
    assert out["ok"] is False and len(out["problems"]) == 2


def test_verify_with_a_stale_anchor_after_a_rewrite(store):
    head = json.loads(_cli("verify", "--store", store, "--json").output)["head"]
    record(store, user="ann", role="clinician", action="sign_out")
    assert _cli("verify", "--store", store, "--anchor", head).exit_code == 0  # later entries are fine
    r = _cli("verify", "--store", store, "--anchor", "5:" + "0" * 64)
    assert r.exit_code == 1 and "seq 5: edited (the anchor records" in r.output
    r = _cli("verify", "--store", store, "--anchor", "nonsense")
    assert r.exit_code == 2 and "--anchor" in r.output


@pytest.mark.parametrize("args, seqs", [
    ([], [1, 2, 3, 4, 5]),
    (["--user", "bob"], [3, 5]),
    (["--practice", "Z00001", "--action", "decide"], [4]),
    (["--patient", "p2"], [2, 3]),
    (["--since", "2000-01-01", "--until", "2999-01-01"], [1, 2, 3, 4, 5]),
    (["--until", "2000-01-01"], []),
])
def test_show_filters(store, args, seqs):
    r = _cli("show", "--store", store, *args, "--json")
    assert r.exit_code == 0, r.output
    assert [e["seq"] for e in json.loads(r.output)] == seqs


def test_show_table_and_limit(store):
    r = _cli("show", "--store", store, "--limit", "2")
    assert r.exit_code == 0, r.output
    assert "sign_out" in r.output and "sign_in " not in r.output
    assert "the latest 2 of 5 entries" in r.output


def test_show_refuses_an_unknown_action(store):
    r = _cli("show", "--store", store, "--action", "peek")
    assert r.exit_code == 2 and "--action" in r.output


def test_export_csv_and_parquet(store, tmp_path):
    out = tmp_path / "audit.csv"
    r = _cli("export", "--store", store, "--output", out, "--user", "ann", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"output": str(out), "entries": 3}
    rows = list(csv.DictReader(out.read_text(encoding="utf-8-sig").splitlines()))
    assert [r["action"] for r in rows] == ["sign_in", "view_list", "decide"]
    assert rows[1]["patient_ids"] == "p1 p2"
    r = _cli("export", "--store", store, "--output", tmp_path / "audit.parquet")
    assert r.exit_code == 0 and "wrote 5 audit entries" in r.output
    r = _cli("export", "--store", store, "--output", tmp_path / "audit.txt")
    assert r.exit_code == 2 and ".csv or .parquet" in r.output
