"""Hospital data as it arrives: every admission a spell with a unique id, its diagnoses and
procedures named by spell and position (1 the primary, which is the activity row's), no
person in two hospitals at once, transfers and readmissions with their day edges, and the
per-spell truth (_truth/spells.parquet) agreeing with the definitions and with ingest."""
from __future__ import annotations

import csv
import datetime as dt
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from casefind.contract import schema as S
from casefind.synth import generate
from casefind.synth import spells as SP
from casefind.synth._common import load_csv
from casefind.synth.report import (
    READMISSION_TARGET,
    TRANSFER_TARGET,
    _Folder,
    readmission_share,
    transfer_share,
)

ROOT = Path(__file__).parents[2]
N = 20_000
AS_OF = dt.date(2026, 10, 31)
A = (AS_OF - dt.date(1970, 1, 1)).days
NUL = -(2 ** 31)


def _day(col) -> np.ndarray:
    return col.cast(pa.int32()).fill_null(NUL).to_numpy(zero_copy_only=False)


def _str(col) -> np.ndarray:
    return np.array(col.to_pylist(), dtype=object)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return generate(N, 1, tmp_path_factory.mktemp("spells") / "out").out


@pytest.fixture(scope="module")
def patients(out):
    p = pq.read_table(out / "patients.parquet")
    return {"index": {x: i for i, x in enumerate(p.column("patient_id").to_pylist())},
            "birth": _day(p.column("birth_date")), "death": _day(p.column("death_date")),
            "rend": _day(p.column("registration_end")), "sex": _str(p.column("sex"))}


@pytest.fixture(scope="module")
def adm(out):
    """The admission rows of activity, sorted by (patient, start)."""
    act = pq.read_table(out / "activity.parquet")
    a = act.filter(pc.is_in(act.column("setting"), pa.array(list(S.ADMISSION_SETTINGS))))
    d = {"pid": _str(a.column("patient_id")), "start": _day(a.column("start_date")), "end": _day(a.column("end_date")),
         "setting": _str(a.column("setting")), "dest": _str(a.column("discharge_destination")),
         "diag": _str(a.column("primary_diagnosis")), "spell": _str(a.column("spell_id")),
         "prov": _str(a.column("provider_code"))}
    o = np.lexsort((d["start"], d["pid"].astype(str)))
    d = {k: v[o] for k, v in d.items()}
    d["others"] = act.filter(pc.invert(pc.is_in(act.column("setting"), pa.array(list(S.ADMISSION_SETTINGS)))))
    return d


@pytest.fixture(scope="module")
def truth(out, adm):
    """_truth/spells.parquet in the order of `adm`."""
    t = pq.read_table(out / "_truth" / "spells.parquet")
    ids = _str(t.column("spell_id")).astype(str)
    o = np.argsort(ids)
    pos = o[np.searchsorted(ids[o], adm["spell"].astype(str))]
    assert (ids[pos] == adm["spell"].astype(str)).all()
    return {c: (_day(t.column(c)) if pa.types.is_date(t.schema.field(c).type) else _str(t.column(c)))[pos]
            for c in t.column_names}


def test_every_admission_has_a_unique_spell_id(adm):
    ids = adm["spell"]
    assert len(ids) > 5000 and None not in set(ids)
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"SP[1-9]\d{9}", x) for x in ids)
    assert adm["others"].column("spell_id").null_count == adm["others"].num_rows  # only admissions are spells


def test_a_person_is_in_one_hospital_at_a_time(adm, patients):
    pid, start, end = adm["pid"], adm["start"], adm["end"]
    i = np.array([patients["index"][p] for p in pid])
    assert ((end == NUL) | (end >= start)).all()
    same = pid[1:] == pid[:-1]
    assert (start[1:][same] > start[:-1][same]).all()  # later day than the previous start
    assert (end[:-1][same] != NUL).all()  # only a person's last spell can still be open
    assert (start[1:][same] >= end[:-1][same]).all()  # after the previous discharge (same day allowed)
    # in life, and deaths end care: no admission after death; a death in hospital is the last spell
    death, birth = patients["death"][i], patients["birth"][i]
    assert (start >= birth).all() and ((death == NUL) | (start <= death)).all()
    assert ((death == NUL) | (end <= death)).all()
    last = np.r_[~same, True]
    died = adm["dest"] == "died"
    assert died.sum() > 20 and last[died].all() and (end[died] == death[died]).all()
    # open spells: at the extract date or the deregistration, never for the dead
    open_ = end == NUL
    assert open_.sum() > 0 and (death[open_] == NUL).all() and np.equal(adm["dest"][open_], None).all()


def test_diagnoses_name_their_spell_in_positions(out, adm, patients):
    dx = pq.read_table(out / "diagnoses.parquet")
    spell = _str(dx.column("spell_id"))
    pos = dx.column("position").to_numpy(zero_copy_only=False)
    has = np.array([s is not None for s in spell])
    # primary care names no spell; every hospital (acute) diagnosis does
    src = _str(dx.column("source"))
    assert (has == (src == "acute")).all()
    assert np.isnan(pos[~has].astype(float)).all() and not np.isnan(pos[has].astype(float)).any()
    h = {"spell": spell[has].astype(str), "pid": _str(dx.column("patient_id"))[has],
         "date": _day(dx.column("date"))[has], "code": _str(dx.column("code"))[has], "pos": pos[has].astype(np.int64),
         "system": _str(dx.column("code_system"))[has]}
    assert (h["system"] == "icd10").all()
    # each names a spell of the same patient in activity, and is dated at its admission
    ids = adm["spell"].astype(str)
    o = np.argsort(ids)
    k = np.searchsorted(ids[o], h["spell"])
    assert (ids[o][np.minimum(k, len(ids) - 1)] == h["spell"]).all()
    row = o[k]
    assert (adm["pid"][row] == h["pid"]).all() and (adm["start"][row] == h["date"]).all()
    # positions 1..k in each spell, one primary: the activity row's primary diagnosis
    order = np.lexsort((h["pos"], row))
    r, p, code = row[order], h["pos"][order], h["code"][order]
    first = np.r_[True, r[1:] != r[:-1]]
    assert (p[first] == 1).all() and (np.diff(p)[~first[1:]] == 1).all()
    assert len(np.unique(r)) == len(ids)  # every spell has its primary
    assert (code[first] == adm["diag"][r[first]]).all()
    assert p.max() <= SP.MAX_POSITION and len(set(zip(r, code))) == len(r)
    # secondary diagnoses: a few, more for the old (and for emergencies)
    n_dx = np.bincount(r, minlength=len(ids))
    age = (adm["start"] - patients["birth"][[patients["index"][x] for x in adm["pid"]]]) / 365.25
    emerg = adm["setting"] == "emergency_admission"
    old, young = emerg & (age >= 75), emerg & (age >= 18) & (age < 50)
    assert 3 <= np.median(n_dx[old] - 1) <= 8, np.median(n_dx[old] - 1)
    assert np.median(n_dx[young] - 1) <= 2
    assert (n_dx - 1).max() >= 12


def test_procedures_name_their_spell(out, adm):
    pr = pq.read_table(out / "procedures.parquet")
    assert pr.num_rows > 1000
    codes = {r["code"]: r for r in load_csv("opcs4_codes.csv")}
    code = _str(pr.column("code"))
    assert set(code) <= set(codes) and all(re.fullmatch(r"[A-Z]\d{3}", c) for c in codes)
    assert set(pr.column("code_system").to_pylist()) == {"opcs4"}
    spell = _str(pr.column("spell_id")).astype(str)
    ids = adm["spell"].astype(str)
    o = np.argsort(ids)
    k = np.searchsorted(ids[o], spell)
    assert (ids[o][np.minimum(k, len(ids) - 1)] == spell).all()
    row = o[k]
    assert (adm["pid"][row] == _str(pr.column("patient_id"))).all()
    day = _day(pr.column("date"))
    end = np.where(adm["end"][row] == NUL, A, adm["end"][row])
    assert ((day >= adm["start"][row]) & (day <= end)).all()  # within the spell
    pos = pr.column("position").to_numpy()
    order = np.lexsort((pos, row))
    r, p = row[order], pos[order]
    first = np.r_[True, r[1:] != r[:-1]]
    assert (p[first] == 1).all() and (np.diff(p)[~first[1:]] == 1).all()
    # most elective spells, some emergency ones
    with_proc = np.zeros(len(ids), bool)
    with_proc[row] = True
    el, em = adm["setting"] == "elective_admission", adm["setting"] == "emergency_admission"
    elective_share, emergency_share = with_proc[el].mean(), with_proc[em].mean()
    assert elective_share > 0.85 and 0.2 < emergency_share < 0.5, (elective_share, emergency_share)
    # coronary revascularisation after some angina, infarction and heart-failure admissions
    rv = np.isin(code, SP.REVASCULARISATION)
    cardiac = np.array([d.startswith(("I20", "I21", "I50")) for d in adm["diag"]])
    assert (em & cardiac)[row[rv]].sum() >= 10
    # a knee replacement's main procedure, then its side
    knee = np.isin(code[order], ["W401", "W411", "W421"])
    assert knee.sum() > 10 and (p[knee] == 1).all()


def test_transfers_and_the_transfer_edge(out, adm, truth):
    pid, start, end, dest = adm["pid"], adm["start"], adm["end"], adm["dest"]
    f = _Folder(out, AS_OF)
    low, high = TRANSFER_TARGET[1:]
    assert low <= transfer_share(f) <= high
    tr = np.flatnonzero(dest == "other_hospital")
    assert len(tr) > 50
    nxt = tr + 1
    assert (nxt < len(pid)).all() and (pid[nxt] == pid[tr]).all()  # a next spell always follows
    gap = start[nxt] - end[tr]
    assert set(gap) == set(range(S.TRANSFER_DAYS + 2))  # 0, 1, 2 and the edge, 3
    assert (adm["prov"][nxt] != adm["prov"][tr]).all()  # at another provider
    cont = gap <= S.TRANSFER_DAYS
    assert truth["is_transfer"][nxt][cont].all() and not truth["is_transfer"][nxt][~cont].any()
    assert (truth["cips_position"][nxt][cont] >= 2).all() and (truth["cips_position"][nxt][~cont] == 1).all()
    # one day past TRANSFER_DAYS is no transfer: a readmission (an emergency 3 days after a discharge)
    assert truth["readmission_30d"][nxt][~cont].all()
    assert set(truth["generated_as"][nxt][~cont]) == {"transfer_late"}
    assert truth["cips_position"].max() >= 3  # a transfer transferred on


def test_readmissions_and_their_day_edges(out, adm, truth, patients):
    start, prev = adm["start"], truth["previous_discharge"]
    cip_start = truth["cips_position"] == 1
    emerg = adm["setting"] == "emergency_admission"
    gap = np.where(prev == NUL, -1, start - prev)
    assert (prev[~cip_start] == NUL).all()
    for d in (0, 1, 28, 29, 30, 31):
        assert (cip_start & emerg & (gap == d)).sum() >= 1, d
    readmit = truth["readmission_30d"]
    assert (readmit == (cip_start & emerg & (gap >= 0) & (gap <= 29))).all()
    edge = cip_start & emerg
    assert readmit[edge & (gap == 29)].all() and not readmit[(gap == 30) | (gap == 31)].any()
    # the rate the indicator counts, and more for the old
    low, high = READMISSION_TARGET[1:]
    share, people = readmission_share(_Folder(out, AS_OF))
    assert people > 1000 and low <= share <= high, share
    age = (start - patients["birth"][[patients["index"][x] for x in adm["pid"]]]) / 365.25
    counted = cip_start & emerg & np.equal(truth["excluded"], None)
    assert readmit[counted & (age >= 75)].mean() > readmit[counted & (age < 75)].mean() + 0.03
    # readmissions for cancer and obstetrics, which the indicator excludes
    diag = adm["diag"]
    cancer = np.array([d[0] == "C" for d in diag])
    obstetric = np.array([d[0] == "O" for d in diag])
    assert (readmit & cancer).sum() >= 5 and (readmit & obstetric).sum() >= 3
    assert (truth["excluded"][cancer] == "cancer").all() and (truth["excluded"][obstetric] == "obstetrics").all()
    sex = patients["sex"][[patients["index"][x] for x in adm["pid"]]]
    assert (sex[obstetric] == "F").all() and ((age[obstetric] >= 15) & (age[obstetric] < 50)).all()
    assert set(truth["generated_as"]) == set(SP.KINDS)


def test_truth_is_the_definition_recomputed(out, adm, truth):
    """The report's reading of activity (CIP linkage, previous discharge) gives the truth."""
    f = _Folder(out, AS_OF)
    s = f.admissions
    pid = np.asarray(f.pid.to_pylist(), dtype=object)[s["pid"]]
    o = np.lexsort((s["start"], pid.astype(str)))  # the order of `adm`
    s = {k: np.asarray(v)[o] for k, v in s.items()}
    assert (pid[o] == adm["pid"]).all() and (s["start"] == adm["start"]).all()
    assert (s["continues"] == truth["is_transfer"].astype(bool)).all()
    assert (s["previous"] == truth["previous_discharge"]).all()
    assert (np.asarray(s["excluded"]) == np.not_equal(truth["excluded"], None)).all()


def test_acsc_truth_follows_the_indicator_codelist(adm, truth):
    groups = {}
    with (ROOT / "rules/codelists/acsc_chronic_icd10.csv").open(encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            groups[r["code"]] = r["category"]

    def category(code):
        hit = {c for k, c in groups.items() if (code.startswith(k[:-1]) if k.endswith("*") else code == k)}
        return hit.pop() if len(hit) == 1 else None

    acsc = truth["acsc"]
    flagged = np.not_equal(acsc, None)
    assert flagged.sum() > 100 and len(set(acsc[flagged])) >= 6
    assert (adm["setting"][flagged] == "emergency_admission").all()
    assert all(category(d) == a for d, a in zip(adm["diag"][flagged], acsc[flagged]))
    # the indicator excludes angina and heart-failure admissions with a revascularisation
    rv = truth["revascularised"].astype(bool)
    assert (rv & np.isin(acsc, ["angina", "heart_failure"])).sum() >= 3


def test_ingest_derives_what_the_truth_says(tmp_path):
    """Ingest computes activity's derived columns (cips_position, previous_discharge): the same,
    spell by spell, as the truth."""
    from casefind.ingest import run_ingest
    from casefind.store import Store

    generate(3000, 5, tmp_path / "src")
    run_ingest(tmp_path / "src", tmp_path / "store")
    st = Store.open(tmp_path / "store")
    a = st.table("activity")
    num = a["spell_id"]
    sel = num > 0
    ids = st.dictionary("spell")[num[sel]].astype(str)
    t = pq.read_table(tmp_path / "src" / "_truth" / "spells.parquet")
    tid = _str(t.column("spell_id")).astype(str)
    assert sorted(ids) == sorted(tid)
    o = np.argsort(tid)
    pos = o[np.searchsorted(tid[o], ids)]
    assert (a["cips_position"][sel] == t.column("cips_position").to_numpy()[pos]).all()
    assert (a["previous_discharge"][sel] == _day(t.column("previous_discharge"))[pos]).all()
    for name in ("diagnoses", "procedures"):
        assert st.table(name).num_rows > 0
