"""Why a row can be quarantined. Ingest assigns exactly one reason per bad row (the first
that applies, in this order); the synthetic generator's error injection produces each."""
from __future__ import annotations

from casefind.contract.schema import CODE_PATTERN_DOC, EARLIEST_DATE, LATEST_DATE, MAX_POSITION

REASONS: dict[str, str] = {
    "missing_value": "a required column is empty",
    "unparseable_date": "a date that is not an ISO date (YYYY-MM-DD)",
    "unparseable_number": "a number that cannot be read as one",
    "invalid_code": f"a practice, locality or system code that is not {CODE_PATTERN_DOC}",
    "duplicate_practice": "practice_code already seen in practices (the first row is kept)",
    "duplicate_patient": "patient_id already seen in this table (the first row is kept)",
    "duplicate_spell": "spell_id already seen in activity (a spell is one row; the first row is kept)",
    "unknown_practice": "practice_code not in practices",
    "unknown_patient": "patient_id not in patients",
    "unknown_spell": ("spell_id (of diagnoses or procedures) is not the spell_id of a stored activity "
                      "row of the same patient"),
    "unknown_sex": "sex is not one of F, M, U",
    "unknown_ethnicity": "ethnicity is not an NHS ethnic category letter",
    "unknown_code_system": "code_system not allowed for this table",
    "unknown_source": "source is not a known source",
    "unknown_setting": "setting is not a known setting",
    "unknown_discharge_destination": "discharge_destination is not a known destination",
    "unknown_funding": "funding is not activity, block, national, out_of_area or high_cost_low_volume",
    "unknown_kind": "opt-out kind is not type1 or ndo",
    "negative_cost": "cost below zero",
    "out_of_range": ("a number outside its valid range (e.g. imd_decile not 1-10, a position not "
                     f"1-{MAX_POSITION}) or not finite (NaN, inf), or a date before {EARLIEST_DATE} "
                     f"or after {LATEST_DATE}"),
    "position_without_spell": "a position given without a spell_id (a position is a place in a spell)",
    "death_before_birth": "death_date before birth_date",
    "end_before_start": "an end date before its start date",
    "event_before_birth": "an event dated before the patient's birth",
    "event_after_death": "an event dated after the patient's death",
    "invalid_nhs_number": "NHS number not 10 digits with a valid modulus-11 check digit",
}


def unknown_value_reason(column: str) -> str:
    reason = f"unknown_{column}"
    if reason not in REASONS:
        raise KeyError(f"no quarantine reason for an unknown {column}")
    return reason
