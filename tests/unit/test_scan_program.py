"""Lowering a plan to ScanPrograms, without running a kernel: typed arguments, one slot per
aggregation, every aggregation with a reducer, and kernels whose source does not depend on
how many periods are evaluated at once. Then the one thing that needs Numba: scanning only
some patients gives those patients' rows of a full scan."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from casefind.contract import TABLES
from casefind.engines import native
from casefind.engines.base import get_engine
from casefind.engines.native_codegen import NULL, generate, lower
from casefind.engines.reducers import REDUCERS, SPARSE_MIN, reducer_for
from casefind.engines.scan_program import CodelistArg, DaysArg, GroupValidArg, OutArg, PatientsArg, ValidArg
from casefind.lists.run import rule_expressions
from casefind.plan import bind, make_plan
from casefind.rules import ir
from casefind.rules.compile import compile_rule
from casefind.store import Store
from casefind_testdata import synthetic_store

RULES = Path(__file__).parents[2] / "rules"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    return Store.open(synthetic_store(tmp_path_factory.mktemp("scan"), 2000, 11))


def _plan(rule_path: Path, periods=None):
    rule = compile_rule(rule_path)
    return rule, make_plan(rule_expressions(rule), rule.as_of, rule.population, periods)


@pytest.mark.parametrize("rule", ["frail.yml", "hfrs.yml", "rising_risk.yml", "segments.yml"])
def test_lowering_types_every_argument_and_slot(store, rule):
    _, plan = _plan(RULES / rule)
    for table, slots in plan.scans.items():
        prog = lower(table, slots, store)
        assert len(prog.slots) == len(slots) == sum(len(b.slots) for b in prog.blocks)
        assert not any(isinstance(a, tuple) for a in prog.args.values())
        for sp in prog.slots:
            red = reducer_for(sp.slot.node, TABLES[table])
            assert (sp.ok is not None) == red.has_valid
            if sp.member is not None:  # in a group: its member of the group's outputs (or returned records)
                assert (prog.returns.get(sp.out) or prog.args[sp.out]).slots[sp.member] == sp.index
                assert (sp.out in prog.returns) is (sp.out not in prog.args)
                assert not sp.ok or isinstance(prog.args[sp.ok], GroupValidArg)
                continue
            assert prog.args[sp.out] == OutArg(sp.index, np.dtype(red.dtype).name)
            if sp.ok:
                assert isinstance(prog.args[sp.ok], ValidArg)
        assert all(len(prog.args[b.days].days) == 1 for b in prog.bounds)
        text = prog.describe()
        for cl in {a.codelist.name for a in prog.args.values() if isinstance(a, CodelistArg)}:
            assert text.count(f"codelist {cl}:") == 1


def test_describe_names_the_feature_a_slot_serves(store):
    rule, plan = _plan(RULES / "frail.yml")
    names = {node: name for name, node in rule.features.items() if isinstance(node, (ir.Aggregate, ir.Trend))}
    table, slots = next((t, s) for t, s in plan.scans.items() if any(x.node in names for x in s))
    text = lower(table, slots, store).describe(names)
    assert any(f"{names[s.node]} (" in text for s in slots if s.node in names)


def test_kernel_source_does_not_grow_with_periods(store):
    ends = [dt.date(2026, m, 28) for m in range(1, 13)]
    path = RULES / "kpis" / "triple_aim.yml"
    from casefind.kpis.compute import expressions
    from casefind.kpis.define import load_kpis

    exprs = expressions(load_kpis(path))
    one = make_plan(exprs, ends[0], None, [(ends[0], 28)])
    twelve = make_plan(exprs, ends[0], None, [(d, 28 + i % 4) for i, d in enumerate(ends)])
    assert [len(s) for s in one.scans.values()] == [len(s) for s in twelve.scans.values()]
    for table in one.scans:
        a = generate(table, one.scans[table], store, (28,))
        b = generate(table, twelve.scans[table], store, tuple(28 + i % 4 for i in range(12)))
        assert a.source == b.source
        assert {len(x.days) for x in b.program.args.values() if isinstance(x, DaysArg)} == {12}
        assert any(isinstance(x, PatientsArg) for x in b.program.args.values())


def test_every_aggregation_has_a_reducer():
    names = set(getattr(ir, "AGGREGATES", ())) | {"trend"}
    assert names - {"count_distinct"} <= set(REDUCERS)
    for name, red in REDUCERS.items():
        assert red.name == name and red.dtype in (np.bool_, np.int64, np.float64)


@pytest.mark.parametrize("rule", ["frail.yml", "multimorbidity.yml"])
def test_patients_scans_only_theirs_and_gives_their_rows(store, rule):
    r = compile_rule(RULES / rule)
    exprs = {k: v for k, v in rule_expressions(r).items()}
    full = native.ENGINE.evaluate(store, exprs, r.as_of, r.population)
    some = np.array([1390, 3, 3, 77, 0, 201])
    eng = native.NativeEngine(store, some)
    part = eng.evaluate(exprs, r.as_of, r.population)
    assert part.column("patient").to_pylist() == [0, 3, 77, 201, 1390]
    assert part.equals(full.take([0, 3, 77, 201, 1390]))
    assert native.ENGINE.evaluate(store, exprs, r.as_of, r.population, patients=some).equals(part)


def test_codelist_slots_of_one_loop_share_one_lookup_and_one_walk(store):
    """multimorbidity's thirty register codelists over diagnoses: one codelist group (its
    source does not grow with the codelists); in a KPI, rows up to each period's date are
    walked once for every period."""
    _, plan = _plan(RULES / "multimorbidity.yml")
    src = generate("diagnoses", plan.scans["diagnoses"], store).source
    assert src.count("rt.group_row(") == 1 and "cl_hyp_cod" not in src
    ends = [dt.date(2026, m, 28) for m in range(1, 13)]
    periods = [(d, 28) for d in ends]
    _, twelve = _plan(RULES / "multimorbidity.yml", periods)
    prog = lower("diagnoses", twelve.scans["diagnoses"], store, tuple(28 for _ in ends))
    assert any(b.walk and b.groups for b in prog.blocks)


def _split_kpis(providers: tuple[str, ...]):
    """triple_aim's expressions with each split measure's values per provider (its block's
    members) as expressions of their own, named ``<block>#<j>``."""
    from casefind.engines.base import block_members
    from casefind.kpis import levels
    from casefind.kpis.compute import expressions
    from casefind.kpis.define import load_kpis

    ks = load_kpis(RULES / "kpis" / "triple_aim.yml")
    return {**expressions(ks), **block_members(levels.blocks(ks, providers))}


def test_a_kpi_split_by_provider_is_one_lookup_per_row_whatever_the_providers(store):
    """triple_aim's four measures split by provider: one count per measure and provider,
    each ``setting == S and provider_code == P``. They join one value group per measure, so
    the activity kernel's source does not grow with the providers (at 10M patients the
    unrolled counts were more than Numba could compile): one source for 6 and 12, and one
    for SPARSE_MIN and 60, where the groups are kept sparse. It counts what the reference
    engine does, for providers in the store and ones that are not."""
    from casefind.kpis.levels import provider_codes

    mine = provider_codes(store)
    ends = [dt.date(2026, m, 28) for m in (3, 4)]
    periods = [(d, 28) for d in ends]
    few = mine + tuple(f"ZZ{i}" for i in range(6 - len(mine)))
    src = {}
    for size in (6, 12, SPARSE_MIN, 60):
        plan = make_plan(_split_kpis(mine + tuple(f"ZZ{i}" for i in range(size - len(mine)))), ends[0], None, periods)
        kernel = generate("activity", plan.scans["activity"], store, (28, 28))
        src[size] = kernel.source
        assert sum(len(b.groups) for b in kernel.program.blocks) >= 4
        assert len(kernel.program.returns) == (4 if size >= SPARSE_MIN else 0)  # counts kept sparse
    assert src[6] == src[12] and src[SPARSE_MIN] == src[60] and src[60].count("rt.group_row(") >= 4
    exprs = {k: bind(v, 28) for k, v in _split_kpis(few).items() if "|val@#" in k}
    assert len(exprs) == 4 * 6
    for end in ends:
        ours = native.ENGINE.evaluate(store, exprs, end)
        ref = get_engine("duckdb").evaluate(store, exprs, end)
        assert {k: ours.column(k).to_pylist() for k in exprs} == {k: ref.column(k).to_pylist() for k in exprs}
        assert sum(pc.sum(ours.column(k)).as_py() for k in exprs) > 0


def test_a_split_measures_block_is_its_value_groups_counts_kept_sparse(store):
    """A measure split by provider is one value group of counts in the activity scan, kept
    sparse: the kernel records only the counts that are not 0 (a patient sees few of sixty
    providers), and the engine hands the block over as those records (SparseBlock), not as
    a dense patients x providers array (at 60 providers writing and copying that was half
    a KPI run). Read as an array it is what the reference engine gives for each member, 0
    where a patient has no such row, in every period, and so is each member read on its
    own. A group of fewer than SPARSE_MIN is dense, and with few providers the groups are
    a provider's settings instead: then the block is gathered from several groups."""
    from casefind.engines.base import SparseBlock, block_members
    from casefind.kpis import levels
    from casefind.kpis.define import load_kpis
    from casefind.kpis.levels import provider_codes

    ks = load_kpis(RULES / "kpis" / "triple_aim.yml")
    periods = [(dt.date(2026, m, 28), 28) for m in (3, 4)]
    for extra, one_group in ((SPARSE_MIN, True), (1, False)):
        blocks = levels.blocks(ks, provider_codes(store) + tuple(f"ZZ{i}" for i in range(extra)))
        eng = native.NativeEngine(store)
        eng.scan_periods({}, periods, None, blocks)
        values = eng.period_values({}, blocks)
        members = block_members(blocks)
        for (end, days), (_, got) in zip(periods, values):
            ref = get_engine("duckdb").evaluate(store, {k: bind(v, days) for k, v in members.items()}, end)
            assert set(got) == set(blocks) and len(blocks) == 4
            for name, block in got.items():
                assert isinstance(block, SparseBlock) is one_group, name
                dense = np.asarray(block)
                assert dense.dtype == np.int64 and dense.shape == (store.n_patients, len(blocks[name]))
                want = [ref.column(f"{name}#{j}").fill_null(0).to_pylist() for j in range(dense.shape[1])]
                assert dense.T.tolist() == want, name
            assert sum(int(np.asarray(b).sum()) for b in got.values()) > 0
            alone = native.ENGINE.evaluate(store, {k: bind(v, days) for k, v in members.items()}, end)
            assert {k: alone.column(k).to_pylist() for k in members} == {k: ref.column(k).to_pylist() for k in members}


def test_days_after_is_the_most_days_a_date_falls_after_the_sort_date(store):
    """Store.days_after against numpy over the whole table (and a negative most, where every
    date falls before its sort date); None when a row that has the date has no sort date
    (nothing then bounds it), 0 when no row has the date."""
    from casefind.store.reader import _most_days_after

    t = store.table("activity")
    end, start = t["end_date"].astype(np.int64), t["start_date"].astype(np.int64)
    has = end != NULL
    lag = store.days_after("activity", "end_date")
    assert lag == int((end[has] - start[has]).max()) > 0
    assert _most_days_after(start[has], end[has], NULL, NULL) == int((start[has] - end[has]).max())
    assert _most_days_after(np.array([3, 5], np.int32), np.array([10, 9], np.int32), NULL, NULL) == -4
    later, sort = np.array([NULL, 5, 9], np.int32), np.array([NULL, 1, 2], np.int32)
    assert _most_days_after(later, sort, NULL, NULL) == 7
    assert _most_days_after(np.array([4, 9], np.int32), np.array([NULL, 2], np.int32), NULL, NULL) is None
    assert _most_days_after(np.array([NULL], np.int32), np.array([NULL], np.int32), NULL, NULL) == 0


def _after(column: str, op: type, days: int, window=None) -> ir.Aggregate:
    date = ir.Shift(ir.AsOf(), days=days)
    col = ir.Column("activity", column, ir.T.DATE)
    test = op(col, date) if op in (ir.Gt, ir.Ge) else op(date, col)
    return ir.Count("activity", where=ir.And(ir.Eq(ir.Column("activity", "setting", ir.T.TEXT),
                                                   ir.Const("emergency_admission", ir.T.TEXT)), test),
                    **({"window": window} if window else {}))


def test_a_filter_after_a_date_starts_the_loop_where_it_can_first_pass(store):
    """count(activity, end_date > as_of - 10 days): a spell that ends after that date may
    start up to days_after(end_date) before it, so each period's loop starts there (rows
    sorted before it cannot pass), not at the patient's first row; the counts are the
    reference engine's for >, >=, < and <= and with a window, at one date and at twelve."""
    lag = store.days_after("activity", "end_date")
    exprs = {"gt": _after("end_date", ir.Gt, -10), "ge": _after("end_date", ir.Ge, -10),
             "lt": _after("end_date", ir.Lt, -3), "le": _after("end_date", ir.Le, -3),
             "ranged": _after("end_date", ir.Gt, -40, ir.Range((0, 60))),
             "start": _after("start_date", ir.Gt, -200)}
    as_of = dt.date(2025, 6, 30)
    plan = make_plan(exprs, as_of)
    prog = lower("activity", plan.scans["activity"], store)
    firsts = {sp.slot.node: blk.first for blk in prog.blocks for sp in blk.slots}
    assert all(firsts[n] != "lo" for n in exprs.values())
    day = {b.var: prog.args[b.days].days[0] for b in prog.bounds}
    rounded = 1 << (lag - 1).bit_length()
    from casefind.contract.dates import to_day

    assert day[firsts[exprs["gt"]]] == to_day(as_of) - 10 - rounded
    assert day[firsts[exprs["ge"]]] == to_day(as_of) - 10 - rounded - 1
    assert day[firsts[exprs["start"]]] == to_day(as_of) - 200
    assert "from end_date > a date, at most" in prog.describe()
    ref = get_engine("duckdb")
    for periods in (None, [(dt.date(2025, m, 28), 28) for m in range(1, 13)]):
        for d, _ in periods or [(as_of, None)]:
            want = ref.evaluate(store, exprs, d)
            got = native.NativeEngine(store).evaluate(exprs, d)
            for name in exprs:
                assert got.column(name).equals(want.column(name)), (name, d)
        if periods:
            eng = native.NativeEngine(store)
            tables = eng.evaluate_periods(exprs, periods)
            for (d, _), got in zip(periods, tables):
                want = ref.evaluate(store, exprs, d)
                assert all(got.column(n).equals(want.column(n)) for n in exprs), d


def test_a_tables_spell_tests_are_one_pass_each_as_if_alone(store):
    """Three spell_has tests over diagnoses: one kernel reads each row's spell once for all
    of them, and each test's earliest day per spell is what it is alone and what numpy
    finds."""
    from casefind.engines.native_codegen import generate_spell_tests

    position = ir.Column("diagnoses", "position", ir.T.INT)
    tests = {"primary": ir.Eq(position, ir.Const(1, ir.T.INT)),
             "secondary": ir.Ge(position, ir.Const(2, ir.T.INT)), "any": None}
    nodes = [ir.SpellHas("activity", "diagnoses", where=w) for w in tests.values()]
    src = generate_spell_tests("diagnoses", nodes, store).source
    assert src.count("c_spell_id[r]") == 1 and src.count("= day") == len(nodes)
    together = native.NativeEngine(store)
    together._spell_tests(nodes)
    t = store.table("diagnoses")
    spell, pos, day = t["spell_id"], t["position"], t["date"].astype(np.int64)
    for n, keep in zip(nodes, [pos == 1, pos >= 2, np.ones(len(pos), bool)]):
        alone = native.NativeEngine(store)
        alone._spell_tests([n])
        want = np.full(len(alone.spell_cache[n]), np.iinfo(np.int64).max, np.int64)
        rows = keep & (spell > 0)
        np.minimum.at(want, spell[rows], day[rows])
        assert np.array_equal(together.spell_cache[n], alone.spell_cache[n])
        assert np.array_equal(together.spell_cache[n], want)
        assert (want < np.iinfo(np.int64).max).sum() > 10


def test_in_batches_runs_every_call_once_on_every_thread_it_has(monkeypatch):
    """The KPI sums of a chunk shared out over the scan threads: each call made exactly
    once, with its own arguments, however many threads there are (one: in this thread)."""
    import threading

    for threads in (1, 2, 3):
        monkeypatch.setattr(native, "scan_threads", lambda n=threads: n)
        seen, where = [], set()

        def call(i, out, seen=seen, where=where):
            out[i] += 1
            seen.append(i)
            where.add(threading.get_ident())

        out = np.zeros(7, np.int64)
        native.in_batches([(call, i, out) for i in range(7)])
        assert sorted(seen) == list(range(7)) and out.tolist() == [1] * 7
        assert (where == {threading.get_ident()}) is (threads == 1)
