"""Populations larger than one block (BLOCK patients) are generated a block at a time, so that
memory is bounded by the block, not the population (docs/scale-out.md: 10M patients on one
24 GB machine). Each block is an area of its own: its own practices, localities and systems
(numbered on from the blocks before it), its own random streams, and pseudonyms, spell ids and
NHS numbers drawn from the whole population's numbering, so that no two blocks share one.
A population of at most BLOCK patients is one block, exactly as before blocks existed."""
from __future__ import annotations

import pathlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from casefind.synth.population import Area

BLOCK = 1_000_000


@dataclass(frozen=True)
class Block:
    """One block: its patients are rows first..first+n-1 of the whole population."""
    index: int
    first: int
    n: int
    seed: int  # the block's own random streams; the population's seed for block 0

    def numbering(self, seed: int, spells_before: int) -> Numbering:
        """Where this block's NHS numbers and spell ids sit in the population's numbering
        (its seed, this block's first row, the spells the blocks before made)."""
        return Numbering() if self.index == 0 else Numbering((seed, self.first), (seed, spells_before))


@dataclass(frozen=True)
class Numbering:
    """A block's NHS numbers and spell ids as (seed, first): None for a population of one
    block, which numbers them from its own seed and 0."""
    nhs: tuple[int, int] | None = None
    spells: tuple[int, int] | None = None


def plan(patients: int, seed: int, block: int = BLOCK) -> list[Block]:
    """Blocks of at most ``block`` patients, as equal as they can be."""
    sizes = [len(a) for a in np.array_split(np.arange(patients), -(-patients // block))]  # ceil
    firsts = np.cumsum([0] + sizes[:-1])
    return [Block(i, int(f), n, seed if i == 0 else _block_seed(seed, i))
            for i, (f, n) in enumerate(zip(firsts, sizes, strict=True))]


def _block_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, 7919, index]).generate_state(1, np.uint64)[0])


class TableFiles:
    """One file per table however many blocks write to it: each block's rows are appended (as
    row groups, or CSV lines under one header) in the first block's schema."""

    def __init__(self, fmt: str):
        self.fmt = fmt
        self._open: dict[pathlib.Path, tuple[object, pa.Schema]] = {}

    def add(self, path: pathlib.Path, table: pa.Table) -> None:
        if path not in self._open:
            writer = (pacsv.CSVWriter(str(path), table.schema) if self.fmt == "csv"
                      else pq.ParquetWriter(str(path), table.schema, compression="snappy"))
            self._open[path] = (writer, table.schema)
        writer, schema = self._open[path]
        writer.write_table(table if table.schema == schema else table.cast(schema))

    def close(self) -> None:
        for writer, _ in self._open.values():
            writer.close()
        self._open.clear()


__all__ = ["BLOCK", "Area", "Block", "TableFiles", "plan"]
