"""The input data contract (v2), defined once.

v2 adds hospital spells: ``activity.spell_id``, diagnoses linked to their spell with their
``position`` (1 primary, 2 and above secondary), and a ``procedures`` table (OPCS-4). A v1
source (none of these columns, no procedures) still ingests: the new columns are nullable and
the new table optional.

Ingest validates against it, the synthetic generator writes it, the docs are generated from
it and the tests read it. Nothing else in the project spells out a table's columns.
"""
from __future__ import annotations

from dataclasses import dataclass, field

CONTRACT_VERSION = "2"

# --- Enumerations (the order is the small-integer encoding in the store; never reorder) ----
SEX = ("F", "M", "U")
CODE_SYSTEMS = ("snomed", "icd10", "read2", "ctv3", "opcs4", "dmd", "bnf")
CLINICAL_CODE_SYSTEMS = ("snomed", "icd10", "read2", "ctv3", "opcs4")
PROCEDURE_CODE_SYSTEMS = ("opcs4",)
MEDICATION_CODE_SYSTEMS = ("dmd", "bnf")
SOURCES = ("primary_care", "acute", "community", "mental_health", "social_care")
SETTINGS = (
    "gp", "ae", "emergency_admission", "elective_admission", "outpatient", "community",
    "mental_health", "social_care", "ambulance", "out_of_hours", "care_home",
)
DISCHARGE_DESTINATIONS = ("home", "care_home", "died", "other_hospital", "other")
# How an activity row is paid for. A null reads as "activity" (paid by activity or tariff).
# The Year of Care Commissioning handbook leaves the other four out of a capitated budget:
# block contracts without activity data, nationally commissioned (specialised) services,
# out-of-area activity and high-cost low-volume residential placements.
FUNDING = ("activity", "block", "national", "out_of_area", "high_cost_low_volume")
FUNDING_DEFAULT = "activity"
OPT_OUT_KINDS = ("type1", "ndo")
ETHNIC_CATEGORIES = tuple("ABCDEFGHJKLMNPRSZ")  # NHS ethnic category letters in use
KNOWN_REGISTERS = (
    "case_management", "palliative_care", "virtual_ward", "care_home", "learning_disability",
)
KNOWN_MEASURES = ("pam", "outcomes_star", "eq5d_index", "supported_to_manage")
REVIEW_DECISIONS = ("listed", "accepted", "declined", "already_known")
ADMISSION_SETTINGS = ("emergency_admission", "elective_admission")  # spells that form CIP spells
# Positions of diagnoses and procedures within a spell: 1 is the primary (main) one. HES APC
# holds 20 diagnosis and 24 procedure positions per episode; a spell of several episodes may
# hold more, so the contract bounds positions generously and quarantines what no extract has.
MAX_POSITION = 99
# Two admission spells are one continuous inpatient (CIP) spell when the first ends with a
# discharge to another hospital and the second starts within this many days of that discharge
# (after the HES CIP spell method, which links transfers between providers).
TRANSFER_DAYS = 2

# --- Rules every table shares --------------------------------------------------------------
# Codes of the hierarchy become folder and file names (lists per practice, KPI rows), so they
# keep to ODS style: upper-case letters, digits, '_' and '-', starting with a letter or digit,
# at most 16 characters. Nothing that matches can be a path ('..', '/'), hidden, or a formula.
CODE_PATTERN = r"[A-Z0-9][A-Z0-9_-]{0,15}"
CODE_PATTERN_DOC = ("an ODS-style code: upper-case letters, digits, `_` and `-`, starting with a "
                    "letter or digit, at most 16 characters")
# Dates outside this window are not dates of anyone's care: a year typed wrongly, a sentinel
# (0001-01-01, 9999-12-31) or an overflowed timestamp. They are quarantined as out_of_range.
EARLIEST_DATE = "1900-01-01"
LATEST_DATE = "2099-12-31"
# Extra source columns are stored under this prefix, so they can never collide with a
# store column (patient, practice, ...) or a quarantine column (_reason, ...).
EXTRA_PREFIX = "extra__"
# An extra column of an analysis table named like one of these (compared in lower case, with
# spaces and punctuation read as '_'), or starting with one of the prefixes, or whose values
# are mostly valid NHS numbers, is removed on ingest: identities are only ever held apart.
IDENTIFIER_NAMES = (
    "nhs_number", "nhs_no", "given_name", "family_name", "forename", "surname", "first_name",
    "last_name", "full_name", "name", "patient_name", "postcode", "post_code", "email", "phone",
    "telephone", "mobile", "date_of_birth", "dob",
)
IDENTIFIER_PREFIXES = ("address",)


@dataclass(frozen=True)
class Column:
    """One column of a contract table.

    kind is one of:
      patient_id  the pseudonymised key (string or integer in the source)
      date        ISO date; stored as int32 days since 1970-01-01
      enum        one of a fixed tuple of values; stored as int8 index into ``values``
      code        a clinical code; stored as int32 index into its code system's dictionary.
                  ``code_system`` names the column holding the system, or a fixed system
      text        free text; stored dictionary-encoded (int32 index, -1 for null)
      float, int  numbers; ``minimum``/``maximum`` bound the valid range
      spell       a hospital spell identifier (text in the source); stored as an int32 spell
                  number shared by every table that names spells (0 missing), so a diagnosis
                  or procedure joins its spell by number. Rules read it as an integer key
                  (compare with ==), never as text
``derived``: computed on ingest from other columns, never read from the source (a source
column of that name is dropped, with the reason in the ingest summary).
    ``pattern`` (text only): a regular expression every value must match in full
    (``invalid_code`` otherwise), for values that become names of files and folders.
    """

    name: str
    kind: str
    nullable: bool = False
    values: tuple[str, ...] = ()
    code_system: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    derived: bool = False
    doc: str = ""

    def __post_init__(self) -> None:
        kinds = {"patient_id", "date", "enum", "code", "text", "float", "int", "spell"}
        if self.kind not in kinds:
            raise ValueError(f"column {self.name}: unknown kind {self.kind!r}")
        if self.kind == "enum" and not self.values:
            raise ValueError(f"column {self.name}: an enum needs values")
        if self.kind == "code" and not self.code_system:
            raise ValueError(f"column {self.name}: a code needs its code_system")
        if self.pattern and self.kind != "text":
            raise ValueError(f"column {self.name}: only a text column can have a pattern")


@dataclass(frozen=True)
class Table:
    """One contract table. ``sort_date`` is the date the store sorts each patient's rows by;
    ``code_column`` the column holding the codes a codelist is matched against (None: the
    table has no codes)."""

    name: str
    columns: tuple[Column, ...]
    doc: str
    required: bool = False
    per_patient_events: bool = True
    sort_date: str | None = None
    restricted: bool = False
    ends: tuple[tuple[str, str], ...] = ()  # (start, end) date pairs: end must not precede start
    event_dates: tuple[str, ...] = ()  # dates that must fall within the patient's life
    unique: str | None = None  # column whose values must be unique
    checks: tuple[str, ...] = field(default=())  # named extra checks, see ingest.validate
    recorded_by: str | None = None  # None: loaded by ingest; else the command that records it
    code_column: str | None = None

    def __post_init__(self) -> None:
        if self.code_column is not None and self.column(self.code_column).kind != "code":
            raise ValueError(f"table {self.name}: code_column {self.code_column} is not a code column")

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name} has no column {name!r}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def source_columns(self) -> tuple[Column, ...]:
        """The columns a source provides (derived ones are computed on ingest)."""
        return tuple(c for c in self.columns if not c.derived)


def _pid(doc: str = "pseudonymised patient identifier") -> Column:
    return Column("patient_id", "patient_id", doc=doc)


PATIENTS = Table(
    "patients",
    (
        _pid("pseudonymised patient identifier; unique"),
        Column("birth_date", "date", doc="month precision is enough (day may be the 1st)"),
        Column("sex", "enum", values=SEX, doc="F, M, U (unknown / other)"),
        Column("practice_code", "text", pattern=CODE_PATTERN,
               doc="current (or last) registered practice; must exist in practices"),
        Column("registration_start", "date"),
        Column("registration_end", "date", nullable=True, doc="null while registered"),
        Column("death_date", "date", nullable=True),
        Column("imd_decile", "int", nullable=True, minimum=1, maximum=10,
               doc="index of multiple deprivation of residence, 1 = most deprived"),
        Column("ethnicity", "enum", nullable=True, values=ETHNIC_CATEGORIES,
               doc="NHS ethnic category letter"),
        Column("lsoa_code", "text", nullable=True, doc="small-area code of residence"),
    ),
    doc="One row per person ever registered.",
    required=True,
    per_patient_events=False,
    ends=(("registration_start", "registration_end"), ("birth_date", "death_date")),
    unique="patient_id",
    checks=("known_practice",),
)

PRACTICES = Table(
    "practices",
    (
        Column("practice_code", "text", pattern=CODE_PATTERN, doc="unique (ODS code)"),
        Column("practice_name", "text"),
        Column("locality_code", "text", pattern=CODE_PATTERN, doc="neighbourhood / PCN / locality"),
        Column("locality_name", "text"),
        Column("system_code", "text", pattern=CODE_PATTERN, doc="ICB or place"),
        Column("system_name", "text"),
    ),
    doc="The reporting hierarchy: practice → locality → system.",
    required=True,
    per_patient_events=False,
    unique="practice_code",
)

DIAGNOSES = Table(
    "diagnoses",
    (
        _pid(),
        Column("date", "date"),
        Column("code_system", "enum", values=CLINICAL_CODE_SYSTEMS),
        Column("code", "code", code_system="code_system",
               doc="ICD-10 without the dot (I509); a dot is removed on ingest"),
        Column("source", "enum", nullable=True, values=SOURCES),
        Column("spell_id", "spell", nullable=True,
               doc="the hospital spell the diagnosis was coded in: a spell_id of the same "
                   "patient in activity (v2; null for primary care and v1 sources)"),
        Column("position", "int", nullable=True, minimum=1, maximum=MAX_POSITION,
               doc="the diagnosis's place in its spell's coding: 1 primary, 2 and above "
                   "secondary (v2; needs spell_id)"),
    ),
    doc="Coded clinical events from any setting. Hospital diagnoses name their spell and "
        "position (v2).",
    sort_date="date",
    event_dates=("date",),
    code_column="code",
)

ACTIVITY = Table(
    "activity",
    (
        _pid(),
        Column("start_date", "date"),
        Column("end_date", "date", nullable=True,
               doc="spells only; bed days = end − start (0 for same-day)"),
        Column("setting", "enum", values=SETTINGS),
        Column("cost", "float", nullable=True, minimum=0, doc="GBP"),
        Column("primary_diagnosis", "code", nullable=True, code_system="icd10",
               doc="ICD-10 for admissions"),
        Column("provider_code", "text", nullable=True),
        Column("discharge_destination", "enum", nullable=True, values=DISCHARGE_DESTINATIONS),
        Column("spell_id", "spell", nullable=True,
               doc="hospital provider spell identifier of an admission; unique; diagnoses and "
                   "procedures name it (v2)"),
        Column("funding", "enum", nullable=True, values=FUNDING,
               doc="how the row is paid for: `activity` (by activity or tariff; null reads as "
                   "this), `block` (a block contract without activity-based payment), "
                   "`national` (nationally commissioned, e.g. specialised services), "
                   "`out_of_area` (commissioned by another system), `high_cost_low_volume` "
                   "(high-cost low-volume residential placements). The Year of Care "
                   "Commissioning handbook keeps all but `activity` out of a capitated "
                   "budget's in-scope spend. Optional: a source without it reads as all "
                   "`activity`"),
        Column("cips_position", "int", nullable=True, minimum=1, maximum=MAX_POSITION, derived=True,
               doc="derived: 1 for an admission that starts a continuous inpatient (CIP) "
                   "spell, 2, 3, ... for one that continues it by a transfer (the previous "
                   f"admission was discharged to another hospital at most {TRANSFER_DAYS} days "
                   "before); null for rows that are not admissions"),
        Column("previous_discharge", "date", nullable=True, derived=True,
               doc="derived: for an admission that starts a CIP spell, the discharge date of "
                   "the same patient's previous CIP spell (the last spell of a transfer chain) "
                   "that ended on or before this admission; what readmission indicators count "
                   "from. Looks only backwards, so it never reveals a later event"),
    ),
    doc="Contacts, attendances and spells (utilisation and cost).",
    sort_date="start_date",
    ends=(("start_date", "end_date"),),
    event_dates=("start_date", "end_date"),
    code_column="primary_diagnosis",
)

PROCEDURES = Table(
    "procedures",
    (
        _pid(),
        Column("date", "date", doc="the date of the procedure"),
        Column("code_system", "enum", values=PROCEDURE_CODE_SYSTEMS,
               doc="opcs4 (OPCS-4, the NHS classification of interventions and procedures)"),
        Column("code", "code", code_system="code_system",
               doc="OPCS-4 without the dot (K401); a dot is removed on ingest"),
        Column("spell_id", "spell", nullable=True,
               doc="the hospital spell it was done in: a spell_id of the same patient in activity"),
        Column("position", "int", nullable=True, minimum=1, maximum=MAX_POSITION,
               doc="1 the main procedure, 2 and above the others"),
    ),
    doc="Procedures and interventions in hospital spells (v2; optional).",
    sort_date="date",
    event_dates=("date",),
    code_column="code",
)

MEDICATIONS = Table(
    "medications",
    (
        _pid(),
        Column("date", "date"),
        Column("code_system", "enum", values=MEDICATION_CODE_SYSTEMS),
        Column("code", "code", code_system="code_system"),
        Column("quantity", "float", nullable=True, minimum=0),
    ),
    doc="Issues of prescribed medicines.",
    sort_date="date",
    event_dates=("date",),
    code_column="code",
)

OBSERVATIONS = Table(
    "observations",
    (
        _pid(),
        Column("date", "date"),
        Column("code_system", "enum", values=CLINICAL_CODE_SYSTEMS),
        Column("code", "code", code_system="code_system"),
        Column("value", "float"),
        Column("unit", "text", nullable=True),
    ),
    doc="Measured values (blood pressure, BMI, HbA1c, ...).",
    sort_date="date",
    event_dates=("date",),
    code_column="code",
)

EXPERIENCE = Table(
    "experience",
    (
        _pid(),
        Column("date", "date"),
        Column("measure", "text", doc="pam, outcomes_star, eq5d_index, supported_to_manage, ..."),
        Column("value", "float"),
    ),
    doc="Patient-reported measures.",
    sort_date="date",
    event_dates=("date",),
)

REGISTERS = Table(
    "registers",
    (
        _pid(),
        Column("register", "text",
               doc="case_management, palliative_care, virtual_ward, care_home, learning_disability, ..."),
        Column("start_date", "date"),
        Column("end_date", "date", nullable=True, doc="null while on the register"),
    ),
    doc="Caseloads and registers with join and leave dates.",
    sort_date="start_date",
    ends=(("start_date", "end_date"),),
    event_dates=("start_date",),
)

OPT_OUTS = Table(
    "opt_outs",
    (
        _pid(),
        Column("kind", "enum", values=OPT_OUT_KINDS,
               doc="type1 (GP-level objection) or ndo (national data opt-out)"),
        Column("date", "date"),
    ),
    doc="Opt-outs from the use of data beyond direct care.",
    sort_date="date",
)

IDENTITIES = Table(
    "identities",
    (
        _pid(),
        Column("nhs_number", "text", doc="10 digits with a valid modulus-11 check digit"),
        Column("given_name", "text"),
        Column("family_name", "text"),
        Column("practice_code", "text", pattern=CODE_PATTERN),
    ),
    doc="Restricted. Never in the analysis store: held apart, read only to re-identify a "
        "patient for direct care by their own practice.",
    per_patient_events=False,
    restricted=True,
    unique="patient_id",
    checks=("known_practice", "nhs_number"),
)

REVIEWS = Table(
    "reviews",
    (
        _pid(),
        Column("date", "date", doc="when the patient was listed, or the decision was made"),
        Column("rule", "text", doc="the rule whose list it was (e.g. frail)"),
        Column("decision", "enum", values=REVIEW_DECISIONS,
               doc="listed (sent for review), accepted, declined, already_known"),
    ),
    doc="Clinicians' review of case-finding lists. Not loaded by ingest: `casefind review "
        "import` records it beside the store, and it survives new snapshots. Rules read it with "
        "`reviewed(...)` or as any event table.",
    sort_date="date",
    recorded_by="casefind review",
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (PATIENTS, PRACTICES, DIAGNOSES, ACTIVITY, PROCEDURES, MEDICATIONS, OBSERVATIONS, EXPERIENCE,
              REGISTERS, OPT_OUTS, IDENTITIES, REVIEWS)
}
INPUT_TABLES = tuple(n for n, t in TABLES.items() if t.recorded_by is None)  # what ingest loads
EVENT_TABLES = tuple(n for n, t in TABLES.items() if t.per_patient_events)  # what rules aggregate
INPUT_EVENT_TABLES = tuple(n for n in EVENT_TABLES if n in INPUT_TABLES)
ANALYSIS_TABLES = tuple(n for n in INPUT_TABLES if not TABLES[n].restricted)


def table(name: str) -> Table:
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"no contract table {name!r}; tables are {', '.join(TABLES)}") from None
