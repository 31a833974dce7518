"""``casefind serve`` (the clinicians' review app, docs/app.md) and ``casefind users`` (its
accounts: add, remove, reset, list; local passwords, or bound to an OpenID Connect provider)."""
from __future__ import annotations

import getpass
import sys
from pathlib import Path

import click

from casefind.cli_common import emit_json, json_option, resolve_store, setting
from casefind.errors import UsageError
from casefind.ui import console, err_console

DEMO_ROLES = (("analyst", "analyst", ()), ("auditor", "auditor", ()))
STORE_OPTION = click.option("--store", type=click.Path(path_type=Path), default=None,
                            help="The store (default: CASEFIND_STORE, casefind.toml, else the demo workspace).")
USERS_OPTION = click.option("--users", "users_file", type=click.Path(path_type=Path), default=None,
                            help="The users file (default: STORE/app/users.json).")


def _users(store: Path | None, users_file: Path | None):
    from casefind.app.users import UserStore, default_path

    return UserStore(users_file or default_path(resolve_store(store)))


def _store_for_audit(store: Path | None, users_file: Path | None) -> Path | None:
    return resolve_store(store) if users_file is None or store is not None else None


def _password(from_stdin: bool) -> tuple[str, bool]:
    """The password (from standard input, first line), else a random one to print once."""
    from casefind.app.users import new_password

    if not from_stdin:
        return new_password(), True
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise UsageError("no password on standard input", option="--password-stdin")
    return line, False


def _audit(store: Path | None, action: str, name: str, detail: dict | None = None) -> None:
    if store is None:
        return
    from casefind import audit

    audit.record(store, user=getpass.getuser(), role="admin", action=action, detail={"account": name, **(detail or {})})


users_command = click.Group("users", help="The review app's local accounts (argon2id-hashed passwords).")


@users_command.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(["clinician", "practice_admin", "analyst", "auditor"]))
@click.option("--practice", "practices", multiple=True, help="A practice code the user acts for (repeat for more).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (else one is made).")
@click.option("--oidc-subject", default=None, metavar="SUB",
              help="Signed in by the OpenID Connect provider only: its identifier for this person (no password).")
@STORE_OPTION
@USERS_OPTION
def users_add(name, role, practices, password_stdin, oidc_subject, store, users_file):
    """Add a user; prints the password when casefind made it."""
    if oidc_subject is not None and password_stdin:
        raise UsageError("an account signed in by the OIDC provider has no password", option="--password-stdin")
    password, made = (None, False) if oidc_subject is not None else _password(password_stdin)
    users = _users(store, users_file)
    users.add(name, role, list(practices), password, oidc_subject=oidc_subject)
    _audit(_store_for_audit(store, users_file), "user_added", name,
           {"new_role": role} | ({"sign_in": "oidc"} if oidc_subject is not None else {}))
    console.print(f"Added {name} ({role}{', ' + ', '.join(practices) if practices else ''}) to {users.path}"
                  f"{', signed in by the OIDC provider' if oidc_subject is not None else ''}.")
    if made:
        console.print(f"Password (shown once): {password}", highlight=False)


@users_command.command("remove")
@click.argument("name")
@STORE_OPTION
@USERS_OPTION
def users_remove(name, store, users_file):
    """Remove a user (their sessions end at their next request)."""
    users = _users(store, users_file)
    users.remove(name)
    _audit(_store_for_audit(store, users_file), "user_removed", name)
    console.print(f"Removed {name} from {users.path}.")


@users_command.command("reset")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input (else one is made).")
@STORE_OPTION
@USERS_OPTION
def users_reset(name, password_stdin, store, users_file):
    """Give a user a new password; unlocks a locked account."""
    password, made = _password(password_stdin)
    users = _users(store, users_file)
    existing = users.get(name)
    was_locked = bool(existing and existing.locked)
    users.reset(name, password)
    where = _store_for_audit(store, users_file)
    _audit(where, "password_reset", name)
    if was_locked:
        _audit(where, "account_unlocked", name)
    console.print(f"New password for {name}{' (unlocked)' if was_locked else ''}.")
    if made:
        console.print(f"Password (shown once): {password}", highlight=False)


@users_command.command("list")
@STORE_OPTION
@USERS_OPTION
@json_option
def users_list(store, users_file, as_json):
    """Who has an account: role, practices, failed sign-ins, locked."""
    users = _users(store, users_file).load()
    rows = [{"name": u.name, "role": u.role, "practices": u.practices, "failed": u.failed, "locked": u.locked,
             "sign_in": "oidc" if u.oidc_subject else "password", "oidc_subject": u.oidc_subject or None}
            for u in sorted(users.values(), key=lambda u: u.name)]
    if as_json:
        emit_json(rows)
        return
    from rich.table import Table

    table = Table("user", "role", "practices", "sign-in", "failed", "locked")
    for r in rows:
        table.add_row(r["name"], r["role"], ", ".join(r["practices"]), r["sign_in"], str(r["failed"]),
                      "yes" if r["locked"] else "")
    console.print(table)


def demo_accounts(store: Path, users_path: Path, practices: list[str]) -> list[tuple[str, str, str]]:
    """(name, role, password) of the demo accounts, made afresh with new random passwords."""
    from casefind.app.users import UserStore, new_password

    users, made = UserStore(users_path), []
    wanted = [(f"clinician-{p.lower()}", "clinician", (p,)) for p in practices[:2]] + list(DEMO_ROLES)
    for name, role, codes in wanted:
        password = new_password()
        if users.get(name) is None:
            users.add(name, role, list(codes), password)
        else:
            users.reset(name, password)
        made.append((name, role, password))
    return made


def _demo_lists(store: Path, out: Path) -> None:
    """The demo workspace's first list (the shipped frailty rule), if no run is registered."""
    from casefind.lists.run import run
    from casefind.project import shipped_rules
    from casefind.store import listings

    if listings.runs(store):
        return
    err_console.print("[cyan]No list has been run on the demo store yet: running the shipped frail rule ...[/]")
    run(shipped_rules() / "frail.yml", store, out)


def oidc_authenticator(root: Path, users_path: Path, oidc_file: Path | None):
    """The OIDC authenticator when one is set up (``--oidc``, else STORE/app/oidc.json), else None
    (local accounts). Reads the provider's discovery document now: a CasefindError if it cannot."""
    from casefind.app import oidc_config

    path = oidc_file or oidc_config.default_path(root)
    if oidc_file is None and not path.exists():
        return None
    from casefind.app.auth import LocalAuthenticator
    from casefind.app.oidc import OidcAuthenticator
    from casefind.app.users import UserStore

    config = oidc_config.load(path)
    users = UserStore(users_path)
    authenticator = OidcAuthenticator(config, users, local=LocalAuthenticator(users) if config.allow_local else None)
    err_console.print(f"Sign-in with {config.name} ({config.issuer}); local passwords "
                      f"{'allowed' if config.allow_local else 'disabled'}.", highlight=False)
    return authenticator


@click.command("serve")
@STORE_OPTION
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@USERS_OPTION
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="The folder runs wrote their lists to (default: the project's out setting).")
@click.option("--behind-tls-proxy", is_flag=True,
              help="Served over HTTPS by a reverse proxy on this machine: Secure cookies, HSTS, and the proxy's "
                   "X-Forwarded-For/-Proto trusted.")
@click.option("--oidc", "oidc_file", type=click.Path(path_type=Path), default=None,
              help="Sign in with an OpenID Connect provider set up in this file (default: STORE/app/oidc.json "
                   "when it exists).")
def serve_command(store, host, port, users_file, out_dir, behind_tls_proxy, oidc_file):
    """The clinicians' review web app: each practice's lists, by name, for its own clinicians."""
    import uvicorn

    from casefind.app.app import create_app
    from casefind.app.users import default_path
    from casefind.workspace import demo_paths

    demo = setting("store", store) is None
    root = resolve_store(store)
    users_path = users_file or default_path(root)
    outs = [Path(out_dir or setting("out", None) or "out")]
    if demo:
        outs.append(demo_paths()["root"] / "out")
        _demo_lists(root, outs[-1])
        if users_file is None:
            from casefind.app.work import Work

            accounts = demo_accounts(root, users_path, Work(root, outs).practices())
            console.print("Demo accounts (synthetic data; new passwords at every start):")
            for name, role, password in accounts:
                console.print(f"  {name:<20} {role:<10} {password}", highlight=False)
    elif not users_path.exists():
        raise UsageError(f"no users file at {users_path}", "add the first user: casefind users add NAME --role ROLE",
                         option="--users")
    if host not in ("127.0.0.1", "localhost", "::1") and not behind_tls_proxy:
        err_console.print("[yellow]warning:[/] serving plain HTTP beyond this machine; put it behind a TLS proxy "
                          "and give --behind-tls-proxy")
    authenticator = oidc_authenticator(root, users_path, oidc_file)
    app = create_app(root, users_path, secure_cookies=behind_tls_proxy, out_dirs=outs, trust_proxy=behind_tls_proxy,
                     authenticator=authenticator)
    console.print(f"casefind review on http://{host}:{port}/ (store {root}); Ctrl-C stops it.")
    uvicorn.run(app, host=host, port=port, proxy_headers=behind_tls_proxy, forwarded_allow_ips="127.0.0.1",
                server_header=False, log_level="warning")
