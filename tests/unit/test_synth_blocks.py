"""A population larger than a block is made a block at a time (synth.blocks): its blocks must
never share a patient, practice, locality, system, spell id or NHS number, and a population of
one block must be the one synth made before blocks existed (block 0 keeps the seed)."""
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from casefind.errors import UsageError
from casefind.synth import blocks as B
from casefind.synth import check_size, generate


def test_blocks_cover_the_population_in_order_and_block_0_keeps_the_seed():
    plan = B.plan(2_500, 7, block=1_000)
    assert [(b.first, b.n) for b in plan] == [(0, 834), (834, 833), (1667, 833)]
    assert plan[0].seed == 7 and len({b.seed for b in plan}) == 3
    assert B.plan(1_000, 7, block=1_000) == [B.Block(0, 0, 1_000, 7)]


@pytest.fixture(scope="module")
def blocked(tmp_path_factory):
    out = tmp_path_factory.mktemp("blocked") / "src"
    result = generate(2_400, 3, out, block=800)
    return out, result


@pytest.mark.parametrize("table, column", [
    ("patients", "patient_id"), ("practices", "practice_code"), ("restricted/identities", "nhs_number")])
def test_no_two_blocks_share_an_identifier(blocked, table, column):
    out, _ = blocked
    col = pq.read_table(out / f"{table}.parquet", columns=[column]).column(column)
    assert len(col) == len(pc.unique(col)) > 0


def test_spells_localities_and_systems_are_each_one_blocks(blocked):
    out, _ = blocked
    act = pq.read_table(out / "activity.parquet", columns=["patient_id", "spell_id"]).to_pandas().dropna()
    assert act.spell_id.nunique() > 100 and (act.groupby("spell_id").patient_id.nunique() == 1).all()
    pr = pq.read_table(out / "practices.parquet").to_pandas()
    assert pr.system_code.nunique() == 3  # one system an area of 800
    assert (pr.groupby("locality_code").system_code.nunique() == 1).all()


def test_rows_and_truth_add_up_over_the_blocks(blocked):
    out, result = blocked
    assert result.rows["patients"] == 2_400
    for name in ("patients", "activity", "identities"):
        sub = "restricted/" if name == "identities" else ""
        assert pq.read_metadata(out / f"{sub}{name}.parquet").num_rows == result.rows[name]
    assert pq.read_metadata(out / "_truth" / "latent.parquet").num_rows == 2_400


def test_beyond_the_nhs_number_ranges_only_without_identities_and_never_with_errors(tmp_path):
    with pytest.raises(UsageError, match="with identities") as refused:
        check_size(2_000_000)
    assert "--no-identities" in refused.value.hint
    check_size(2_000_000, with_identities=False)
    with pytest.raises(UsageError, match="one block"):
        check_size(1_500, inject_errors=0.01, block=1_000)
    with pytest.raises(UsageError, match="needs them"):
        check_size(500, with_identities=False, inject_errors=0.01)
    out = tmp_path / "noid"
    generate(1_200, 3, out, block=600, with_identities=False)
    assert not (out / "restricted").exists() and (out / "patients.parquet").is_file()
