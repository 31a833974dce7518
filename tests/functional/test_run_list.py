"""casefind run's list steps (issue 10): only what the list needs is evaluated, and only for the
population's patients; the caps, the list table, the evidence and the re-check give what the
row-by-row versions gave; a segmented rule's cost share is of the feature its ``cost:`` names."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from casefind.engines.base import get_engine
from casefind.lists import recheck, select
from casefind.lists.run import evaluate_list, list_expressions, rule_expressions, run
from casefind.rules.compile import compile_rule
from casefind.store import Store
from casefind_testdata import synthetic_store

ROOT = Path(__file__).parents[2]
RULES = ROOT / "rules"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return synthetic_store(tmp_path_factory.mktemp("runlist"), 3000, 11)


def test_the_list_evaluates_what_it_shows_ranks_and_describes_and_no_more():
    rule = compile_rule(RULES / "frail.yml")
    exprs = list_expressions(rule)
    assert "cost_12m" not in exprs  # frail defines it, nothing on its list reads it
    assert {"efi", "emergency_12m", "frailty", "deficits", "ae_recent", "ae_prior", "last_admission"} <= set(exprs)
    assert {k for k in exprs if ":" in k} == {k for k in rule_expressions(rule) if ":" in k}
    assert set(exprs) < set(rule_expressions(rule))


def test_a_default_reason_evaluates_the_features_it_names(tmp_path):
    path = tmp_path / "r.yml"
    path.write_text('rule: r\nas_of: "2026-10-31"\npopulation: age >= 0\nfeatures:\n  visits: count(activity)\n'
                    '  unused: sum(activity.cost)\ncriteria:\n  include:\n    busy: visits >= 1\n'
                    'output: {columns: [age]}\n')
    exprs = list_expressions(compile_rule(path))
    assert "visits" in exprs and "unused" not in exprs


def test_only_the_population_is_evaluated_and_it_is_the_same_values(store):
    rule = compile_rule(RULES / "frail.yml")
    exprs = list_expressions(rule)
    st = Store.open(store)
    engine = get_engine("native")
    values = evaluate_list(engine, st, rule, exprs)
    everyone = engine.evaluate(st, exprs, rule.as_of, rule.population)
    pop = np.asarray(everyone.column("population").fill_null(False).to_numpy(zero_copy_only=False), bool)
    assert values.num_rows == int(pop.sum()) < st.n_patients
    assert values.column("patient").to_pylist() == np.flatnonzero(pop).tolist()
    assert values.to_pylist() == everyone.filter(pa.array(pop)).to_pylist()


def _capped_by_loop(practice, locality, cap_p, cap_l, total):
    """The caps as the list applied them before, one candidate at a time (the reference)."""
    per_p, per_l, chosen, ranks = {}, {}, [], []
    for i, (p, loc) in enumerate(zip(practice, locality)):
        r = per_p.get(p, 0) + 1
        if (cap_p is not None and r > cap_p) or (cap_l is not None and per_l.get(loc, 0) >= cap_l) \
                or (total is not None and len(chosen) >= total):
            continue
        per_p[p], per_l[loc] = r, per_l.get(loc, 0) + 1
        chosen.append(i)
        ranks.append(r)
    return chosen, ranks


@pytest.mark.parametrize("cap_p, cap_l, total", [(3, None, None), (None, 4, None), (2, 5, 9), (None, None, 7),
                                                 (1, 1, None), (None, None, None)])
def test_the_caps_keep_who_the_candidate_by_candidate_loop_kept(cap_p, cap_l, total):
    rng = np.random.default_rng(cap_p or 0)
    practice = rng.integers(0, 8, 200)
    locality = practice // 3  # a practice is in one locality
    limit = {k: v for k, v in (("per_practice", cap_p), ("per_locality", cap_l), ("total", total)) if v is not None}

    class Rule:
        pass

    rule = Rule()
    rule.limit = limit
    kept, rank = select._capped(rule, practice, locality)
    want, want_rank = _capped_by_loop(practice, locality, cap_p, cap_l, total)
    assert kept.tolist() == want and rank.tolist() == want_rank


def test_every_criterion_has_its_evidence_column_even_when_the_first_patient_does_not_meet_it(store, tmp_path):
    result = run(RULES / "high_utilisers.yml", store, tmp_path / "out")
    table = pq.read_table(result.out_dir / "list.parquet")
    assert {"evidence:repeated_admissions", "evidence:highest_cost"} <= set(table.column_names)
    for name in ("repeated_admissions", "highest_cost"):
        for met, ev in zip(table.column(f"include:{name}").to_pylist(), table.column(f"evidence:{name}").to_pylist()):
            assert (ev is not None) == met
    assert table.schema.field("decision").type == pa.string()


def test_an_empty_list_keeps_every_column(store, tmp_path):
    result = run(RULES / "frail.yml", store, tmp_path / "out", params={"min_age": "150"})
    table = pq.read_table(result.out_dir / "list.parquet")
    assert table.num_rows == 0 and {"patient_id", "rank", "reasons", "decision"} <= set(table.column_names)
    # every practice still gets its file, saying nobody is listed (issue 12; was: no files)
    files = sorted((result.out_dir / "practices").glob("*.csv"))
    assert files and all("is on this list" in f.read_text(encoding="utf-8-sig") for f in files)


def test_the_recheck_finds_a_value_the_engines_disagree_on(store):
    rule = compile_rule(RULES / "frail.yml")
    exprs = list_expressions(rule)
    st = Store.open(store)
    values = evaluate_list(get_engine("native"), st, rule, exprs)
    listed = values.column("patient").to_numpy()[:20].astype(np.int64)
    assert recheck.recheck(st, rule, exprs, values, listed, "native") == 20
    efi = values.column("efi").to_numpy().copy()
    efi[3] += 1e-6
    wrong = values.set_column(values.schema.get_field_index("efi"), "efi", pa.array(efi))
    with pytest.raises(recheck.ValidationError, match=r"engines disagree .* on efi"):
        recheck.recheck(st, rule, exprs, wrong, listed, "native")


def test_segment_cost_shares_are_of_the_feature_the_rule_names(store, tmp_path):
    result = run(RULES / "segments.yml", store, tmp_path / "out")
    shares = [s["cost_share"] for s in result.segments.values()]
    assert all(s is not None for s in shares) and sum(shares) == pytest.approx(1.0)
    assert sum(s["people"] for s in result.segments.values()) == result.counts["population"]


@pytest.mark.parametrize("cost, words, line", [
    ("label", "cost: label is text, not a number", 10),
    ("cost_13m", "cost: 'cost_13m' is not a feature", 10),
])
def test_cost_names_a_numeric_feature_or_is_refused_where_it_is_written(tmp_path, cost, words, line):
    from casefind.rules.errors import RuleError

    path = tmp_path / "r.yml"
    path.write_text('rule: r\nas_of: "2026-10-31"\npopulation: age >= 0\nfeatures:\n  cost_12m: sum(activity.cost)\n'
                    "  label: case(cost_12m > 0, 'high', 'low')\n"
                    f'segments:\n  - some: cost_12m > 0\n  - rest: true\ncost: {cost}\n'
                    'criteria:\n  include:\n    any: true\n')
    with pytest.raises(RuleError) as e:
        compile_rule(path)
    assert words in e.value.message and e.value.span.line == line


def test_cost_without_segments_is_refused(tmp_path):
    from casefind.rules.errors import RuleError

    path = tmp_path / "r.yml"
    path.write_text('rule: r\nas_of: "2026-10-31"\npopulation: age >= 0\nfeatures:\n  cost_12m: sum(activity.cost)\n'
                    'cost: cost_12m\n'
                    'criteria:\n  include:\n    any: cost_12m > 0\n')
    with pytest.raises(RuleError, match="no segments"):
        compile_rule(path)


def test_casefind_run_in_a_fresh_process_leaves_pandas_unimported_and_writes_the_same_list(store, tmp_path):
    """pandas is held back while ``casefind run`` runs (casefind/startup.py: pyarrow would
    import it, 0.2 s, only to check its inputs); the list is the one ``run()`` writes."""
    import subprocess
    import sys

    code = ("import sys\nfrom casefind.cli import main\n"
            f"main(['run', {str(RULES / 'frail.yml')!r}, '--store', {str(store)!r}, '--out', "
            f"{str(tmp_path / 'fresh')!r}], standalone_mode=False)\n"
            "print('pandas imported:', 'pandas' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pandas imported: False" in done.stdout
    ours = run(RULES / "frail.yml", store, tmp_path / "here")
    fresh = pq.read_table(tmp_path / "fresh" / ours.out_dir.name / "list.parquet").drop_columns(["run_id"])
    here = pq.read_table(ours.out_dir / "list.parquet").drop_columns(["run_id"])
    assert fresh.num_rows > 0 and fresh.equals(here)


def test_pandas_is_importable_again_once_the_run_is_over():
    import subprocess
    import sys

    code = ("import sys, pyarrow as pa\nfrom casefind.startup import without_pandas\n"
            "with without_pandas():\n"
            "    pa.table({'a': [1]})\n"
            "    try:\n        import pandas\n    except ModuleNotFoundError:\n        print('held back')\n"
            "print(type(pa.table({'a': [1]}).to_pandas()).__name__)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["held", "back", "DataFrame"]
