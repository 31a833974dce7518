"""casefind as a user gets it: a wheel built from this checkout, installed into a fresh
virtualenv, run from a folder that is not the repository (so nothing can come from rules/ in
a clone): init a project, run a shipped rule by name, its declared tests, and the catalogue,
on the demo workspace (issue 11: "From a wheel built in a fresh venv (not the repository)")."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _sh(args, cwd: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{args}: rc {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    """A fresh virtualenv with the wheel built from this checkout installed (with its dependencies)."""
    root = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CASEFIND_", "PYTHON", "VIRTUAL_ENV"))}
    env["CASEFIND_HOME"] = str(root / "home")
    _sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", root / "dist", REPO], root, env)
    wheels = list((root / "dist").glob("casefind-*.whl"))
    assert len(wheels) == 1
    venv.create(root / "venv", with_pip=True)
    py = root / "venv" / "bin" / "python"
    _sh([py, "-m", "pip", "install", "-q", wheels[0]], root, env)
    env["PATH"] = f"{root / 'venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return root, env


def test_the_wheel_carries_the_rules(installed):
    root, env = installed
    r = _sh(["python", "-c", "import casefind, casefind.project as p; print(casefind.__file__); "
             "print(sorted(x.name for x in p.shipped_rules().glob('*.yml')))"], root, env)
    where, names = r.stdout.splitlines()
    assert str(root / "venv") in where  # the installed copy, not this checkout
    assert "'frail.yml'" in names and "'frail.test.yml'" in names


def test_init_run_test_catalogue_from_the_wheel(installed):
    root, env = installed
    _sh(["casefind", "init", "analysis"], root, env)
    project = root / "analysis"
    assert (project / "casefind.toml").is_file() and (project / "rules" / "frail.yml").is_file()
    run = json.loads(_sh(["casefind", "run", "frail", "--json"], project, env).stdout)
    assert run["counts"]["listed"] > 0
    assert Path(run["out_dir"]).resolve().parent == (project / "out").resolve()
    tested = _sh(["casefind", "test"], project, env)
    assert "frail" in tested.stdout
    _sh(["casefind", "catalogue", "--html", "--output", "catalogue.html"], project, env)
    page = (project / "catalogue.html").read_text()
    assert "frail" in page and "triple_aim" in page
