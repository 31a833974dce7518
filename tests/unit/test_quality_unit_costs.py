"""The unit-cost reference: the shipped one covers every costed setting with its source, and
an analyst's own file that is wrong is a usage error naming --unit-costs."""
from __future__ import annotations

import pytest

from casefind.contract.schema import SETTINGS
from casefind.errors import UsageError
from casefind.quality import unit_costs as uc

HEADER = "setting,unit,cost_gbp,excess_bed_day_gbp,trim_days,max_days,source,release\n"


def test_the_shipped_reference_covers_every_setting_with_a_source_and_release():
    rows = uc.load()
    assert sorted(r["setting"] for r in rows) == sorted(SETTINGS)
    assert all(r["cost_gbp"] > 0 and r["source"] and r["release"] for r in rows)
    emergency = next(r for r in rows if r["setting"] == "emergency_admission")
    assert (emergency["cost_gbp"], emergency["excess_bed_day_gbp"], emergency["trim_days"]) == (3000, 350, 5)
    table = uc.as_table(rows)
    assert table.num_rows == len(SETTINGS) and table.column("cost_gbp").null_count == 0


def test_an_own_file_replaces_it(tmp_path):
    f = tmp_path / "local.csv"
    f.write_text("# our 2026/27 prices\n" + HEADER + "gp,appointment,45,,,,local tariff,2026/27\n")
    assert uc.load(f) == [{"setting": "gp", "unit": "appointment", "cost_gbp": 45.0, "excess_bed_day_gbp": None,
                           "trim_days": None, "max_days": None, "source": "local tariff", "release": "2026/27"}]


@pytest.mark.parametrize("text, says", [
    ("setting,unit\ngp,appointment\n", "no column(s) cost_gbp"),
    (HEADER + "spa,visit,40,,,,x,y\n", "is not a setting"),
    (HEADER + "gp,appointment,lots,,,,x,y\n", "not a number"),
    (HEADER + "gp,appointment,-4,,,,x,y\n", "not a number"),
    (HEADER + "gp,appointment,inf,,,,x,y\n", "not a number"),
    (HEADER + "gp,appointment,0,,,,x,y\n", "positive"),
    (HEADER + "gp,appointment,,,,,x,y\n", "positive"),
    (HEADER + "gp,appointment,42,,,,x,y\ngp,appointment,43,,,,x,y\n", "given twice"),
    (HEADER + "ae,attendance,250,,,x,y,z\n", "max_days"),
])
def test_a_bad_file_is_a_usage_error(tmp_path, text, says):
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(UsageError) as e:
        uc.load(f)
    assert e.value.option == "--unit-costs" and says in e.value.message


def test_a_missing_or_binary_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot read"):
        uc.load(tmp_path / "none.csv")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(UsageError, match="cannot read"):
        uc.load(tmp_path / "bin.csv")
