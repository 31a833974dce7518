"""The embedded demo workspace: a 50,000-patient synthetic population, generated and
ingested on first use, so that a newcomer's first command works with no data of their own.

Lives under the user data directory (``CASEFIND_HOME`` overrides it)."""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs

DEMO_PATIENTS = 50_000
DEMO_SEED = 1


def home() -> Path:
    env = os.environ.get("CASEFIND_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir("casefind"))


def demo_paths() -> dict[str, Path]:
    root = home() / "demo"
    return {"root": root, "source": root / "source", "store": root / "store",
            "identities": root / "identities"}


def ensure_demo_store(say=None) -> Path:
    """Return the demo store, creating it first if it is not there yet."""
    from casefind.store.writer import CURRENT

    paths = demo_paths()
    if (paths["store"] / CURRENT).exists():
        return paths["store"]
    from casefind.ingest import run_ingest
    from casefind.synth import generate

    if say:
        say(f"No store given and no demo workspace yet: creating one with a synthetic population "
            f"of {DEMO_PATIENTS:,} patients (seed {DEMO_SEED}) in {paths['root']} ...")
    paths["root"].mkdir(parents=True, exist_ok=True)
    generate(DEMO_PATIENTS, DEMO_SEED, paths["source"])
    run_ingest(paths["source"], paths["store"], identities_store=paths["identities"])
    if say:
        say(f"Demo workspace ready: {paths['store']}")
    return paths["store"]
