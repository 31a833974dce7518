"""Risk models fitted out of time on a store: a spec (spec.py), its features at past dates
(sample.py), the fit (fit.py), its validation (validate.py), the artefact rules use through
``model("name")`` (artefact.py) and the validation report (report.py). docs/models.md."""
