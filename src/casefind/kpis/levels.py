"""Provider and service levels: a KPI's events split by the activity row's provider_code
(and for a service, its setting: a commissioned service line is a provider's setting).

A measure opts in with ``levels: [provider, service]``; its value adds up activity rows
(counts and sums, see measure_meta.split), so each provider's variant is the same value
with ``provider_code == P`` added to every part's filter, evaluated with the others in the
same pass. The denominator is the system's population: a provider has no registered list,
and with one denominator for all of them the providers' numerators, with the rows that have
no provider_code ("(no provider)", the remainder), add up exactly to the system's. Each
system lists every provider that has activity for its patients in the store, in every
period, so a provider's series has no gaps.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from casefind.kpis.define import KpiSet, Measure
from casefind.rules import ir
from casefind.store import Store
from casefind_native.aggregate import pairs_seen

NO_PROVIDER = "(no provider)"
PROVIDER_CODE = ir.Column("activity", "provider_code", ir.T.TEXT)
SETTING = ir.Column("activity", "setting", ir.T.TEXT)


@dataclass(frozen=True)
class Providers:
    """The store's provider codes, and which of them serve each system's patients."""

    codes: tuple[str, ...]
    served: np.ndarray  # bool, systems x providers

    @classmethod
    def of(cls, store: Store, system_of_patient: np.ndarray, n_systems: int) -> Providers:
        codes = provider_codes(store)
        if not codes:
            return cls(codes, np.zeros((n_systems, 0), bool))
        act = store.table("activity")
        system = np.ascontiguousarray(system_of_patient, dtype=np.int64)
        return cls(codes, pairs_seen(act.offsets, system, np.ascontiguousarray(act["provider_code"]), n_systems,
                                     len(codes)))


def provider_codes(store: Store) -> tuple[str, ...]:
    """Every provider_code of the store's activity, in its dictionary's order."""
    name = "text.activity.provider_code"
    return tuple(str(c) for c in store.dictionary(name)) if name in store.manifest["dictionaries"] else ()


def units(m: Measure, providers: tuple[str, ...]) -> list[tuple[str, str | None]]:
    """The (provider, setting) variants a measure is evaluated for: one per provider, or
    one per provider and setting when its services are not its providers (several settings)."""
    if not m.split.levels:
        return []
    settings = m.split.settings or ()
    if "service" in m.split.levels and len(settings) > 1:
        return [(p, s) for p in providers for s in settings]
    return [(p, None) for p in providers]


def block_name(m: Measure) -> str:
    return f"{m.name}|val@"


def blocks(ks: KpiSet, providers: tuple[str, ...]) -> dict[str, tuple[ir.Node, ...]]:
    """Each split measure's value restricted to each of its (provider, setting) units: one
    block of values per patient, which the engine hands over as one (patients x units)
    array rather than a column per unit (at 10M there are sixty providers)."""
    out: dict[str, tuple[ir.Node, ...]] = {}
    for m in ks.measures.values():
        us = units(m, providers)
        if us:
            out[block_name(m)] = tuple(restrict(m.value, prov, setting) for prov, setting in us)
    return out


def restrict(value: ir.Node, provider: str, setting: str | None = None) -> ir.Node:
    """``value`` (counts and sums over activity, added) counting only one provider's rows."""
    if isinstance(value, ir.Add):
        return ir.Add(restrict(value.left, provider, setting), restrict(value.right, provider, setting))
    test: ir.Node = ir.Eq(PROVIDER_CODE, ir.Const(provider, ir.T.TEXT))
    if setting is not None:
        test = ir.And(test, ir.Eq(SETTING, ir.Const(setting, ir.T.TEXT)))
    where = test if value.where is None else ir.And(value.where, test)
    return dataclasses.replace(value, where=where)


@dataclass(frozen=True)
class UnitRows:
    """One level's units for a split measure: their codes, names, parent (system) codes,
    and for each, the system it is in and the variants whose sums it adds up."""

    codes: list[str]
    names: list[str]
    system: np.ndarray
    members: list[list[int]]  # variant indexes; [] for the remainder (no provider)


def unit_rows(m: Measure, level: str, providers: Providers) -> UnitRows:
    """The provider (or service) rows of every system: the providers serving it, each
    service of theirs, and the remainder with no provider_code."""
    us = units(m, providers.codes)
    codes, names, system, members = [], [], [], []
    for k in range(len(providers.served)):  # each system
        for i, prov in enumerate(providers.codes):
            if not providers.served[k, i]:
                continue
            mine = [j for j, (p, _) in enumerate(us) if p == prov]
            if level == "provider":
                codes.append(prov), names.append(prov), system.append(k), members.append(mine)
                continue
            for j in mine:
                setting = us[j][1] or (m.split.settings or ("",))[0]
                codes.append(f"{prov}/{setting}"), names.append(f"{prov} {setting}")
                system.append(k), members.append([j])
        codes.append(NO_PROVIDER), names.append("activity with no provider_code"), system.append(k)
        members.append([])
    return UnitRows(codes, names, np.asarray(system, np.int64), members)


def unit_sums(rows: UnitRows, variant_sys: list[dict], total_sys: dict) -> dict:
    """The additive pieces per unit row: a provider's are its variants' (at its system), the
    remainder's the system's total less every provider's; n is always the system's."""
    n_rows = len(rows.codes)
    out = {k: np.zeros(n_rows) for k in ("n", "k", "s", "ss")}
    for r, (k, mine) in enumerate(zip(rows.system, rows.members)):
        out["n"][r] = total_sys["n"][k]
        out["k"][r] = total_sys["k"][k]
        if mine:
            out["s"][r] = sum(variant_sys[j]["s"][k] for j in mine)
            # a sum of squares of a sum of variants is not the sum of theirs: no interval then
            out["ss"][r] = variant_sys[mine[0]]["ss"][k] if len(mine) == 1 else np.nan
    for k in range(len(total_sys["n"])):
        rest = [r for r in range(n_rows) if rows.system[r] == k and not rows.members[r]]
        others = [r for r in range(n_rows) if rows.system[r] == k and rows.members[r]]
        for r in rest:
            out["s"][r] = total_sys["s"][k] - sum(out["s"][o] for o in others)
            out["ss"][r] = np.nan  # a remainder has no sum of squares: no interval for a per-head amount
    return out
