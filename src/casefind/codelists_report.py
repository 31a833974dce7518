"""`casefind codelists check RULE`: each of a rule's codelists against a store, and its provenance.

Per codelist: its distinct codes and prefixes, its categories, how many of them the store holds (its
dictionary for the code system: every code any stored table has), which it never holds
(a code the data never uses is a mapping gap or a code the source system does not send),
and, per file, where the codes came from (the ``.provenance.json`` sidecar: source,
release, licence, date retrieved).
"""
from __future__ import annotations

import bisect
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _seen(dictionary: list[str], codes, prefixes) -> tuple[list[bool], list[bool]]:
    """Whether each code is in the (sorted) dictionary, and whether each prefix starts one."""
    known = set(dictionary)
    code_seen = [c in known for c in codes]
    prefix_seen = []
    for p in prefixes:
        i = bisect.bisect_left(dictionary, p)
        prefix_seen.append(i < len(dictionary) and dictionary[i].startswith(p))
    return code_seen, prefix_seen


def codelist_check(rule, store, store_path: Path | str | None = None) -> dict:
    """``rule`` (a CompiledRule) against ``store`` (an open Store): a JSON-ready dict."""
    from casefind.rules.codelists import codelist_manifest

    manifest = codelist_manifest(rule)
    dictionaries = _held(store, {f"code.{cl.system}" for cl in rule.codelists.values()})
    out = []
    for name, cl in rule.codelists.items():
        dname = f"code.{cl.system}"
        held = dname in dictionaries
        code_seen, prefix_seen = _seen(dictionaries.get(dname, []), cl.codes, cl.prefixes)
        seen = code_seen + prefix_seen
        cats = list(cl.categories) if cl.categories else [None] * len(seen)
        by_cat: dict[str, bool] = {}
        for c, s in zip(cats, seen):
            if c:
                by_cat[c] = by_cat.get(c, False) or s
        codes = dict(zip(cl.codes, code_seen))  # distinct, in the file's order
        prefixes = dict(zip(cl.prefixes, prefix_seen))
        m = manifest[name]
        out.append({
            "name": name, "system": cl.system, "file": m["file"], "digest": m["digest"],
            "selected_categories": m["selected_categories"],
            "codes": len(codes), "prefixes": len(prefixes), "categories": len(by_cat),
            "store_has_system": held,
            "codes_seen": sum(codes.values()), "prefixes_seen": sum(prefixes.values()),
            "codes_never_seen": [c for c, s in codes.items() if not s],
            "prefixes_never_seen": [p for p, s in prefixes.items() if not s],
            "categories_never_seen": sorted(c for c, s in by_cat.items() if not s),
            "provenance": m["provenance"],
        })
    return {"rule": rule.name, "rule_file": str(rule.path), "store": str(store_path or store.root),
            "store_snapshot": store.snapshot_id, "codelists": out}


def _held(store, names: set[str]) -> dict[str, list[str]]:
    """Each code dictionary of ``names`` the store holds, sorted; a sharded store's is every
    shard's codes together (a code one shard holds, the store holds)."""
    from casefind.store.sharded import ShardedStore

    shards = (s for _, s in store.shards()) if isinstance(store, ShardedStore) else iter([store])
    held: dict[str, set[str]] = {}
    for shard in shards:  # one shard open at a time
        for name in names & set(shard.manifest["dictionaries"]):
            held.setdefault(name, set()).update(str(c) for c in shard.dictionary(name))
    return {name: sorted(codes) for name, codes in held.items()}


def provenance_text(value) -> str:
    """A provenance value as table text: a repository at its commit, a publisher with the
    copies used, one line per entry of a mapping (e.g. a licence per repository)."""
    if value is None or value == "" or value == {}:
        return "–"
    if isinstance(value, dict):
        if "repository" in value:
            commit = str(value.get("commit") or "")[:12]
            date = f" ({value['commit_date']})" if value.get("commit_date") else ""
            return f"{value['repository']}" + (f" @ {commit}{date}" if commit else "")
        if "publisher" in value:
            repos = value.get("repositories") or []
            return str(value["publisher"]) + (f"; copies in {', '.join(map(str, repos))}" if repos else "")
        return "\n".join(f"{k}: {provenance_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(provenance_text(v) for v in value)
    return str(value).strip()


def _names(values: list[str], most: int = 3) -> str:
    if not values:
        return "–"
    shown = ", ".join(values[:most])
    return shown + (f" (+{len(values) - most})" if len(values) > most else "")


def codelist_check_table(report: dict, out: Console) -> None:
    """The report as two tables: the codes against the store, then the provenance per file."""
    t = Table(title=f"Codelists of {report['rule']} against {report['store']} (snapshot {report['store_snapshot']})",
              title_justify="left")
    for c in ("codelist", "system", "codes", "prefixes", "categories", "seen", "never seen", "categories never seen"):
        t.add_column(c, justify="left" if c in ("codelist", "system", "categories never seen") else "right")
    for r in report["codelists"]:
        total = r["codes"] + r["prefixes"]
        seen = r["codes_seen"] + r["prefixes_seen"]
        never = total - seen
        system = r["system"] if r["store_has_system"] else f"{r['system']} [yellow](not in store)[/]"
        t.add_row(escape(r["name"]), system,
                  f"{r['codes']:,}", f"{r['prefixes']:,}", f"{r['categories']:,}", f"{seen:,}",
                  f"[yellow]{never:,}[/]" if never else "0", escape(_names(r["categories_never_seen"])))
    out.print(t)
    files: dict[str, dict] = {}
    for r in report["codelists"]:
        key = r["file"] or ""
        entry = files.setdefault(key, {"names": [], "r": r})
        entry["names"].append(r["name"])
    p = Table(title="Where the codes came from", title_justify="left", show_header=False)
    p.add_column("field", style="bold")
    p.add_column("value")
    for i, (file, entry) in enumerate(files.items()):
        r, prov = entry["r"], entry["r"]["provenance"] or {}
        if i:
            p.add_section()
        if not file:
            p.add_row("inline", escape(", ".join(entry["names"])) + " (codes written in the rule)")
            continue
        p.add_row("file", escape(file))
        p.add_row("codelists", escape(_names(entry["names"], 4)))
        p.add_row("sha256", (r["digest"] or "–")[:16] + ("…" if r["digest"] else ""))
        if not prov:
            p.add_row("provenance", "[yellow]no provenance sidecar[/]")
            continue
        counts = prov.get("counts") if isinstance(prov.get("counts"), dict) else {}
        for label, key in (("source", "source"), ("release", "release"), ("licence", "licence"),
                           ("retrieved", "date_retrieved")):
            p.add_row(label, escape(provenance_text(prov.get(key))))
        if counts.get("total_rows") is not None:
            p.add_row("rows", f"{counts['total_rows']:,}" + (f" ({counts['total_distinct_codes']:,} distinct codes)"
                                                            if counts.get("total_distinct_codes") is not None else ""))
    out.print(p)
