"""Shared helpers: packaged reference data, day numbers, and a seeded RNG per stage (so that
changing one stage never shifts the random stream of another)."""
from __future__ import annotations

import csv
import datetime as dt
from importlib import resources

import numpy as np

from casefind.contract.dates import to_day

NULL = np.int32(np.iinfo(np.int32).min)


def load_csv(name: str) -> list[dict[str, str]]:
    with resources.files("casefind.synth").joinpath("data", name).open(encoding="utf-8") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def rng(seed: int, stage: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64([seed, stage]))


def day(d: dt.date) -> int:
    return to_day(d)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))
