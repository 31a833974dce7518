"""What the commands share: settings resolved from flags, the environment and casefind.toml
(casefind.project), the demo store when none is set, and the --json and --output options."""
from __future__ import annotations

import json
from pathlib import Path

import click

from casefind.project import Project, load
from casefind.ui import err_console


def project(**flags) -> Project:
    """The settings in force, given this command's flags (None: not given)."""
    return load(flags)


def setting(name: str, flag=None):
    """One setting's value: the flag if given, else the environment, casefind.toml, the default."""
    return load({name: flag}).get(name)


def resolve_store(flag: Path | None) -> Path:
    """The store to use: --store, else CASEFIND_STORE, else casefind.toml, else the demo workspace."""
    store = setting("store", flag)
    if store is not None:
        return store
    from casefind.workspace import ensure_demo_store

    return ensure_demo_store(say=lambda m: err_console.print(f"[cyan]{m}[/]"))


def json_option(f):
    return click.option("--json", "as_json", is_flag=True,
                        help="Print a JSON summary on stdout instead of tables (docs/scripting.md).")(f)


def emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def parse_params(values: tuple[str, ...]) -> dict[str, str]:
    """``--param NAME=VALUE`` (repeatable) as a mapping; a value without ``=`` is refused."""
    out = {}
    for v in values:
        k, eq, val = v.partition("=")
        if not eq or not k.strip():
            raise click.BadParameter(f"{v!r}: write NAME=VALUE", param_hint="--param")
        out[k.strip()] = val.strip()
    return out
