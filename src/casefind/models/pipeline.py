"""Fit and validate a model out of time: predictors on T - 24 months with the outcome over
the 12 months after (training), then predictors on T - 12 months with the outcome up to T
(validation), where T is the spec's as_of. The validation compares the model with a simple
baseline (the spec's baseline count, default prior-year emergency admissions, recalibrated
on the training year), a gradient-boosted alternative, and, on synthetic data, the
generator's own latent risk: the best any model of these data could do."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from casefind.contract.dates import shift_date
from casefind.models import artefact, fit, spec, validate
from casefind.models.sample import Sample, sample

TRAIN_BACK, VALID_BACK = 24, 12     # months before T of the training and validation feature dates
# a model this close to the latent ceiling (or above it) on synthetic data is suspect: the
# generator's own risk is the best any model can do, so only a leak gets there
CEILING_MARGIN = 0.005


def dates(as_of: dt.date) -> dict[str, dt.date]:
    return {"train_features": shift_date(as_of, -TRAIN_BACK), "valid_features": shift_date(as_of, -VALID_BACK),
            "valid_outcome_end": as_of}


def latent_risk(truth: Path, ids: np.ndarray) -> np.ndarray | None:
    """The generator's latent risk as the probability of at least one emergency admission
    in a year (1 - exp(-rate)), for the patients ``ids``; None when ``truth`` has no latent.parquet."""
    import pyarrow.parquet as pq

    path = Path(truth) / "latent.parquet"
    if not path.is_file():
        return None
    t = pq.read_table(path, columns=["patient_id", "latent_risk"])
    rate = dict(zip(t.column("patient_id").to_pylist(), t.column("latent_risk").to_pylist()))
    lam = np.array([rate.get(str(i), np.nan) for i in ids], dtype=np.float64)
    return 1.0 - np.exp(-lam)


def default_truth(store) -> Path | None:
    """A synthetic store's truth folder: its source folder's _truth/, when there is one (a
    sharded store's shards name the delivery they were split from)."""
    manifest = store.open_shard(0).manifest if hasattr(store, "open_shard") else store.manifest
    source = (manifest.get("source") or {}).get("path")
    folder = Path(source) / "_truth" if source else None
    return folder if folder is not None and (folder / "latent.parquet").is_file() else None


def run(spec_path: Path, store, engine: str = "native", truth: Path | None = None, say=print) -> dict:
    """Everything the report and the artefact need, as plain data (plus the fitted model)."""
    s = spec.load_spec(spec_path)
    cs = spec.compile_spec(s)
    when = dates(s.as_of)
    say(f"predictors on {when['train_features']} (training) and {when['valid_features']} (validation)")
    train = sample(store, cs, when["train_features"], engine)
    valid = sample(store, cs, when["valid_features"], engine)
    say(f"fitting on {len(train.y):,} patients ({int(train.y.sum()):,} with the outcome)")
    model = fit.fit_logistic(train.X, train.y, train.names, s.c)
    scores = _scores(model, train, valid, store, truth)
    metrics = {k: validate.evaluate(valid.y, v["score"], v["probability"]) for k, v in scores.items()}
    metrics["model"]["apparent_c"] = validate.c_statistic(train.y, model.predict(train.X))["c"]
    return {"spec": s, "compiled": cs, "fitted": model, "dates": when, "train": _counts(train),
            "valid": _counts(valid), "metrics": metrics, "flags": _flags(cs, metrics), "store": store,
            "engine": engine}


def _scores(model: fit.Fitted, train: Sample, valid: Sample, store, truth: Path | None) -> dict:
    out = {"model": {"score": model.predict(valid.X), "probability": model.predict(valid.X)}}
    base = fit.fit_logistic(train.baseline[:, None], train.y, ("baseline",), 1e6)
    out["baseline"] = {"score": valid.baseline, "probability": base.predict(valid.baseline[:, None])}
    boosted = fit.fit_boosted(train.X, train.y).predict_proba(valid.X)[:, 1]
    out["boosted"] = {"score": boosted, "probability": boosted}
    truth = truth or default_truth(store)
    latent = latent_risk(truth, valid.ids) if truth else None
    if latent is not None and np.isfinite(latent).all():
        out["latent"] = {"score": latent, "probability": latent}
    return out


def _counts(s: Sample) -> dict:
    return {"date": s.date.isoformat(), "outcome_to": s.outcome_date.isoformat(), "patients": len(s.y),
            "with_outcome": int(s.y.sum()), "rate": float(s.y.mean()) if len(s.y) else None}


def _flags(cs: spec.CompiledSpec, metrics: dict) -> list[str]:
    """What a reader must know before trusting the model: a predictor that looks ahead, or a
    validation c-statistic at or above the latent ceiling, which only a leak can reach."""
    flags = [f"predictor {name!r} {why}: the fit is not out of time" for name, why in cs.leaks.items()]
    if "latent" in metrics:
        c_model = metrics["model"]["c_statistic"]["c"]
        c_latent = metrics["latent"]["c_statistic"]["c"]
        if c_model is not None and c_latent is not None and c_model >= c_latent - CEILING_MARGIN:
            flags.append(f"the model's c-statistic {c_model:.3f} reaches the latent-risk ceiling {c_latent:.3f}: "
                         "no honest model can, so a predictor must be reading the outcome")
    return flags


def artefact_body(result: dict) -> dict:
    s: spec.ModelSpec = result["spec"]
    m: fit.Fitted = result["fitted"]
    folder = spec.compile_dir(s.path)
    mm = result["metrics"]["model"]
    body = {
        "name": s.name, "title": s.title, "version": s.version, "kind": "logistic",
        "spec": {"file": _relative(s.path, folder), "sha256": s.sha256},
        "as_of": s.as_of.isoformat(), "dates": {k: v.isoformat() for k, v in result["dates"].items()},
        "horizon_months": spec.HORIZON_MONTHS,
        "training": {"snapshot_id": result["store"].snapshot_id, "engine": result["engine"], **result["train"]},
        "population": str(s.population.value), "outcome": str(s.outcome.value), "regularisation_c": s.c,
        "codelists": {k: _plain(v.value) for k, v in s.codelists.items()},
        "features": {k: str(v.value) for k, v in s.features.items()},
        "intercept": m.intercept,
        "predictors": [{"name": n, "coefficient": b, "mean": mu, "scale": sd, "per_sd": z}
                       for n, b, mu, sd, z in zip(m.names, m.coefficients, m.means, m.scales, m.standardised)],
        "validation": {"c_statistic": mm["c_statistic"], "brier": mm["brier"],
                       "calibration": mm["calibration"], **result["valid"]},
        "flags": result["flags"],
    }
    body["linear_predictor"] = artefact.linear_text(body)
    return body


def _relative(path: Path, folder: Path) -> str:
    try:
        return str(path.resolve().relative_to(folder))
    except ValueError:
        return path.name


def _plain(value):
    """A YAML value (ruamel's mappings and lists) as plain JSON data."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
