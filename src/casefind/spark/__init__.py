"""Apache Spark as the distributed engine (docs/scale-out.md, "Spark").

A sharded store's shards become Spark partitions: each executor opens its shard from shared
storage and runs the very task the single machine runs on it (evaluation by the native
kernels, a shard's list candidates, KPI sums, dataset rows, rank pools); the driver merges
the results with the same functions as the single-machine loop. So a Spark run gives the
loop's results by construction, and the tests check that it does.

From a notebook, with the session you have::

    from casefind import spark as cfspark
    from casefind.lists.run import run
    with cfspark.on(spark):                       # spark: a pyspark.sql.SparkSession
        result = run("rules/frail.yml", "/lake/store", "/lake/lists")

``on`` covers ``casefind.lists.run.run``, ``casefind.lists.dataset.dataset`` and
``casefind.kpis.run.run_kpis`` (and anything else that maps over shards). Inside the block a
single store is refused rather than quietly run on the driver.
"""
from __future__ import annotations

from casefind.spark.mapper import SparkShards, on, start_session

__all__ = ["SparkShards", "on", "start_session"]
