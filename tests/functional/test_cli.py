"""The casefind CLI end to end, as an analyst (or a scheduler reading exit codes) meets it."""
from __future__ import annotations

from casefind.store import Store
from casefind_testdata import cli as run


def test_help_teaches():
    r = run("--help")
    assert r.exit_code == 0
    for word in ("synth", "ingest", "info", "Exit codes"):
        assert word in r.output
    r = run("ingest", "--help")
    assert "quarantined" in r.output and "--strict" in r.output


def test_ingest_then_info(tmp_path, bad_source):
    r = run("ingest", bad_source, "--store", tmp_path / "store")
    assert r.exit_code == 0, r.output
    assert "Quarantined rows by reason" in r.output and "unknown_setting" in r.output
    assert (tmp_path / "store-identities" / "current").exists()
    r = run("info", "--store", tmp_path / "store")
    assert r.exit_code == 0
    assert "3 patients in 2 practices, 1 localities, 1 systems" in r.output
    assert "event_after_death" in r.output
    r = run("info", "--store", tmp_path / "store", "--json")
    assert '"snapshot_id"' in r.output


def test_strict_exit_code_and_store_unchanged(tmp_path, tiny_source, bad_source):
    store = tmp_path / "store"
    assert run("ingest", tiny_source, "--store", store).exit_code == 0
    before = Store.open(store).snapshot_id
    r = run("ingest", bad_source, "--store", store, "--strict")
    assert r.exit_code == 3
    assert "left unchanged" in r.output
    assert Store.open(store).snapshot_id == before


def test_failures_exit_1_with_a_message(tmp_path):
    r = run("ingest", tmp_path / "nowhere", "--store", tmp_path / "s")
    assert r.exit_code == 1 and "does not exist" in r.output
    r = run("info", "--store", tmp_path / "nothing-here")
    assert r.exit_code == 1 and "casefind ingest" in r.output


def test_usage_errors_exit_2():
    assert run("ingest").exit_code == 2
    assert run("synth", "--patients", "5", "--out", "x").exit_code == 2


def test_the_compile_notice_is_for_a_kernel_cache_without_compiled_kernels(tmp_path, monkeypatch):
    from casefind.first_use import compile_notice

    kernels = tmp_path / "kernels"
    monkeypatch.setenv("CASEFIND_KERNEL_CACHE", str(kernels))
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert "compiling kernels for first use, about 2 s" in compile_notice("native")
    assert "compiling kernels for first use, about 12 s" in compile_notice("native", "kpi")
    assert compile_notice("duckdb") is None  # the reference engine compiles nothing
    kernels.mkdir()
    (kernels / "k_0123.py").write_text("")
    assert compile_notice("native") is not None  # a kernel's source, but nothing compiled
    numba = tmp_path / "cache" / "casefind" / "numba" / "kernels_0a1b"  # where casefind_native has Numba cache
    numba.mkdir(parents=True)
    (numba / "k_0123.scan_activity-6.py311.nbi").write_bytes(b"")
    assert compile_notice("native") is None
    assert compile_notice("native", "kpi") is not None  # a list's kernels, but not the KPI runtime
    runtime = tmp_path / "cache" / "casefind" / "numba" / "casefind_native_0c2d"
    runtime.mkdir()
    (runtime / "aggregate.group_sums_into-1021.py311.nbi").write_bytes(b"")
    assert compile_notice("native", "kpi") is None
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))  # Numba's cache elsewhere, and empty
    assert compile_notice("native") is not None


def test_the_kpi_runtime_the_notice_looks_for_is_a_cached_kernel_every_kpi_run_calls():
    from pathlib import Path

    from casefind.first_use import KPI_RUNTIME
    from casefind.kpis import compute
    from casefind_native import aggregate

    module, name = KPI_RUNTIME.split(".")
    assert module == aggregate.__name__.rsplit(".", 1)[1]
    assert type(getattr(aggregate, name)._cache).__name__ != "NullCache"  # cache=True: an index on disk
    assert f"{name}," in Path(compute.__file__).read_text()  # the KPI sums call it


def test_the_notice_looks_where_casefind_native_has_numba_cache(tmp_path):
    """first_use.numba_cache_dir (which must not import Numba) names the folder that
    casefind_native sets NUMBA_CACHE_DIR to; and after a run, a fresh process says nothing."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"} | {"XDG_CACHE_HOME": str(tmp_path)}
    code = ("import os, sys\nfrom casefind.first_use import numba_cache_dir\nmine = str(numba_cache_dir())\n"
            "assert 'numba' not in sys.modules\nimport casefind_native\n"
            "print(mine == os.environ['NUMBA_CACHE_DIR'])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "True", done.stdout + done.stderr


def test_run_and_kpi_say_before_they_compile_kernels_for_first_use(tmp_path, monkeypatch):
    from pathlib import Path

    import casefind.first_use
    from casefind_testdata import synthetic_store

    store = synthetic_store(tmp_path, 300, 3)
    rules = Path(__file__).parents[2] / "rules"
    for compiled in (False, True):
        monkeypatch.setattr(casefind.first_use, "kernels_compiled", lambda job="list", c=compiled: c)
        r = run("run", rules / "frail.yml", "--store", store, "--out", tmp_path / "out")
        assert r.exit_code == 0, r.output
        assert ("compiling kernels for first use, about 2 s" in r.output) is not compiled
        r = run("dataset", rules / "frail.yml", "--store", store, "--output", tmp_path / "frail.parquet")
        assert r.exit_code == 0, r.output
        assert ("compiling kernels for first use, about 2 s" in r.output) is not compiled
        r = run("kpi", rules / "kpis" / "triple_aim.yml", "--period", "2026-10", "--store", store,
                "--history", tmp_path / "history.duckdb")
        assert r.exit_code == 0, r.output
        assert ("compiling kernels for first use, about 12 s" in r.output) is not compiled
