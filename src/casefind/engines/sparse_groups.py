"""A scan's value group of counts kept sparse (reducers.ValueGroup, SPARSE_MIN members or
more): each work item's kernel returns the counts that are not 0 as records, and these
hold them for the engine. A KPI split by sixty providers reads them as blocks of records
(SparseBlock, summed by casefind_native.aggregate.sparse_block_sums_into); anything that
reads one member on its own gets it from a dense array made once."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from casefind.engines.base import SparseBlock


@dataclass
class SparseCounts:
    """A sparse value group's counts (scan_program.SparseGroupOut) for the patients scanned:
    the counts that are not 0, as records (member x periods + period, patient position,
    count) in patient order. A count not recorded is 0."""

    key: np.ndarray
    at: np.ndarray
    count: np.ndarray
    size: int    # members
    shape: tuple  # (periods, patients)

    @classmethod
    def of(cls, parts: list, size: int, shape: tuple) -> SparseCounts:
        """From each work item's (records, how many), in patient order."""
        rec = np.concatenate([buf[:, :n] for buf, n in parts], axis=1) if parts else np.zeros((3, 0), np.int64)
        return cls(rec[0], rec[1], rec[2], size, shape)

    @functools.cached_property
    def _by_period(self) -> tuple[np.ndarray, np.ndarray]:
        """The records' order by period (stable: patient order within one), and where each period starts."""
        period = self.key % self.shape[0]
        order = np.argsort(period, kind="stable")
        return order, np.searchsorted(period[order], np.arange(self.shape[0] + 1))

    def period(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Period ``t``'s records: patient positions, members and counts, in patient order."""
        order, starts = self._by_period
        rows = order[starts[t]:starts[t + 1]]
        return self.at[rows], self.key[rows] // self.shape[0], self.count[rows]

    def member(self, m: int, t: int) -> np.ndarray:
        """Member ``m``'s count for every patient at period ``t`` (a view of ``dense``)."""
        return self.dense[m, t]

    @functools.cached_property
    def dense(self) -> np.ndarray:
        """Every count, (members x periods x patients): made once, if a member is read on
        its own (the KPI sums read ``block``)."""
        out = np.zeros((self.size, *self.shape), np.int64)
        out.reshape(-1, self.shape[1])[self.key, self.at] = self.count
        return out

    def block(self, t: int, members: list[int]) -> SparseBlock:
        """Members ``members`` (in that order) at period ``t`` as a block."""
        at, member, count = self.period(t)
        if members != list(range(self.size)):
            column = np.full(self.size, -1, np.int64)
            column[members] = np.arange(len(members))
            member = column[member]
            keep = member >= 0
            at, member, count = at[keep], member[keep], count[keep]
        return SparseBlock(at, member, count, (self.shape[1], len(members)))


@dataclass
class SparseMember:
    """A sparse group member's slot until it is read (NativeEngine._eval makes its Vec from
    ``values``: a count is never missing)."""

    counts: SparseCounts
    member: int
    t: int
    labels = None

    def values(self) -> np.ndarray:
        return self.counts.member(self.member, self.t)
