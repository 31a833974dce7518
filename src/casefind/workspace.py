"""The embedded demo workspace: a 50,000-patient synthetic population, generated and
ingested on first use, so that a newcomer's first command works with no data of their own.

Lives under the user data directory (``CASEFIND_HOME`` overrides it)."""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs

DEMO_PATIENTS = 50_000
DEMO_SEED = 1
# How long making the demo workspace takes (synth, then ingest), for the message that says
# it is being made: 4.8 s on a shared 2-core machine; slower disks take longer.
DEMO_SECONDS = "5-10 s"


def home() -> Path:
    env = os.environ.get("CASEFIND_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir("casefind"))


def demo_paths() -> dict[str, Path]:
    root = home() / "demo"
    return {"root": root, "source": root / "source", "store": root / "store",
            "identities": root / "identities"}


def demo_version() -> str:
    """What the demo workspace was made for: a new contract or store format remakes it."""
    from casefind.contract import CONTRACT_VERSION
    from casefind.store.writer import FORMAT_VERSION

    return f"data contract v{CONTRACT_VERSION}, store format v{FORMAT_VERSION}\n"


def ensure_demo_store(say=None) -> Path:
    """Return the demo store, creating it first if it is not there yet, and making it again
    when an older casefind made it (it is synthetic: nothing of anyone's is lost)."""
    import shutil
    import time

    from casefind.store.writer import CURRENT

    paths = demo_paths()
    marker = paths["root"] / "demo-version"
    exists = (paths["store"] / CURRENT).exists()
    if exists and marker.exists() and marker.read_text() == demo_version():
        return paths["store"]
    from casefind.ingest import run_ingest
    from casefind.synth import generate

    if say:
        why = ("the demo workspace was made by an older casefind: making it again"
               if exists else "No store given and no demo workspace yet: creating one")
        say(f"{why} with a synthetic population of {DEMO_PATIENTS:,} patients (seed {DEMO_SEED}) "
            f"in {paths['root']} (about {DEMO_SECONDS}) ...")
    started = time.perf_counter()
    if paths["root"].exists() and (exists or marker.exists()):
        shutil.rmtree(paths["root"])
    paths["root"].mkdir(parents=True, exist_ok=True)
    generate(DEMO_PATIENTS, DEMO_SEED, paths["source"])
    run_ingest(paths["source"], paths["store"], identities_store=paths["identities"])
    marker.write_text(demo_version())
    if say:
        say(f"Demo workspace ready in {time.perf_counter() - started:.1f} s: {paths['store']}")
    return paths["store"]
