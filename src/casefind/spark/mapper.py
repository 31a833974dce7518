"""Shards as Spark partitions: ``SparkShards.map`` is ``ShardedStore.map`` on executors.

Each partition holds one shard index (``spark.range(k, numPartitions=k)`` over the k shards
a map names); ``mapInArrow`` runs the task on that shard on an executor (on the opened shard
for ``map``, on the index alone for ``map_each``, an ingest's shards) and yields one Arrow
row, the pickled result.
A user's error on an executor (a ``CasefindError``) comes back as itself, so the CLI prints
it as it would on one machine; anything else comes back with the executor's traceback.
Executors must see the store's folder at the same path (a shared or mounted file system)
and have casefind installed in the Python that ``PYSPARK_PYTHON`` names.
"""
from __future__ import annotations

import contextlib
import functools
import os
import pickle
import sys
import traceback
from pathlib import Path

from casefind.errors import CasefindError, UsageError
from casefind.store.sharded import ShardedStore, mapped_by

RESULT_SCHEMA = "shard long, result binary"
DRIVER_MEMORY = "4g"  # the driver gathers every shard's result (in local mode it runs the tasks too)
OUT_OF_MEMORY_HINT = ("if Spark's log above says java.lang.OutOfMemoryError, give the driver more memory: "
                      "casefind spark --driver-memory 8g ... (or spark.driver.memory in your session); "
                      "otherwise the executors' log (stderr) says why")
LOG_CONFIG = Path(__file__).with_name("log4j2.properties")


class ShardTaskFailed(CasefindError):
    """A task failed on an executor for a reason that is not the user's input (a bug in
    casefind, or an executor that cannot run it): what failed, on which shard. The full
    traceback is on the executor's stderr (Spark's executor log)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message, hint or "the traceback is in the Spark executor's log (stderr); if it is a bug "
                                          "in casefind, report it with that traceback and `casefind --version`")


class SparkShards:
    """The mapper for a Spark session (one partition per shard), or for a ``master`` URL
    whose session starts at the first map (so ``--help`` and usage errors start nothing)."""

    requires_sharded = True
    single_store_hint = "run the same command without `casefind spark` on one machine"

    def __init__(self, spark=None, *, master: str | None = None, driver_memory: str = DRIVER_MEMORY):
        try:  # pyspark's Arrow functions check for pandas; imported now, before a command holds it back
            import pandas  # noqa: F401
        except ImportError as e:
            raise UsageError("pandas is not installed (PySpark's mapInArrow needs it)",
                             'install the extra: pip install -e ".[spark]"') from e
        self._spark, self._given = spark, spark
        self.master = master or spark.sparkContext.master
        self.driver_memory = driver_memory
        self.name = f"Spark ({self.master})"

    @property
    def spark(self):
        if self._spark is None:
            try:
                from pyspark.sql import SparkSession
            except ImportError as e:
                raise UsageError("PySpark is not installed", 'install the extra: pip install -e ".[spark]"') from e
            active = SparkSession.getActiveSession()  # a notebook's or a test's: used, and left running
            self._given = active
            self._spark = active or start_session(self.master, self.driver_memory)
        return self._spark

    def stop(self) -> None:
        """Stop the session this mapper started (not one it was given or found running). A
        session whose JVM has died (a job that ran out of memory kills it) cannot be reached
        to stop: that is not reported, so the job's own error is the one the user sees."""
        if self._spark is not None and self._spark is not self._given:
            with contextlib.suppress(Exception):
                self._spark.stop()
        self._spark = None

    def map(self, store: ShardedStore, task, what: str, say) -> list:
        n = store.n_shards
        say(f"{what}: {n} shard{'s' if n != 1 else ''} on {self.name}")
        root = str(Path(store.root).resolve())
        return self._run(functools.partial(_on_shard, root, task), list(range(n)), what)

    def map_each(self, indices: list[int], task, what: str, say, unit: str = "shard") -> list:
        """``task(i, say)`` for each index on the executors, where no store is open yet (an
        ingest's shards, each built from its part of the split on shared storage; the parts of
        a delivery's table, each split where it lies: ``unit="part"``). The executors'
        progress stays in their log: the driver says what it started."""
        k = len(indices)
        say(f"{what}: {k} {unit}{'s' if k != 1 else ''} on {self.name}")
        return self._run(functools.partial(task, say=_quiet), indices, what)

    def _run(self, task, indices: list[int], what: str) -> list:
        """``task(i)`` for each index, one partition each; results in the order of ``indices``."""
        k = len(indices)
        if not k:
            return []
        partitions = self.spark.range(0, k, 1, numPartitions=k)
        try:
            rows = partitions.mapInArrow(functools.partial(_partition, task, indices), RESULT_SCHEMA).collect()
        except Exception as e:  # the job itself failed (an executor lost, a result too large): not the user's
            first = (str(e).strip().splitlines() or [""])[0][:300]
            raise ShardTaskFailed(f"the Spark job for {what} failed: {type(e).__name__}: {first}",
                                  OUT_OF_MEMORY_HINT) from e
        by_shard = {int(r["shard"]): bytes(r["result"]) for r in rows}
        if sorted(by_shard) != sorted(indices):
            raise ShardTaskFailed(f"Spark returned shards {sorted(by_shard)}, not {sorted(indices)}")
        return [_unwrap(pickle.loads(by_shard[i])) for i in indices]


def _on_shard(root: str, task, i: int):
    """On an executor: ``task`` on shard i of the store at ``root``."""
    return task(ShardedStore(root).open_shard(i), i)


def _quiet(stage: str) -> None:
    return None


def _partition(task, indices: list[int], batches):
    """On an executor: the task on the shard index of each row of this partition."""
    import pyarrow as pa

    for batch in batches:
        for j in batch.column("id").to_pylist():
            i = indices[j]
            try:
                payload = ("ok", task(i))
            except CasefindError as e:
                payload = ("error", e)
            except Exception as e:  # not the user's: the traceback to the executor's log, a summary back
                traceback.print_exc(file=sys.stderr)
                payload = ("bug", f"shard {i:03d} failed on a Spark executor: {type(e).__name__}: "
                                  f"{str(e).splitlines()[0][:200] if str(e) else ''}")
            blob = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
            yield pa.RecordBatch.from_pydict({"shard": pa.array([i], pa.int64()), "result": pa.array([blob])})


def _unwrap(payload):
    kind, value = payload
    if kind == "ok":
        return value
    if kind == "error":
        raise value
    raise ShardTaskFailed(value)


@contextlib.contextmanager
def on(spark):
    """Every merge over a sharded store inside the block runs its shards on ``spark``."""
    mapper = SparkShards(spark)
    with mapped_by(mapper):
        yield mapper


def start_session(master: str = "local[2]", driver_memory: str = DRIVER_MEMORY):
    """A local (or ``master``) Spark session for the CLI: quiet, no UI, executors on this
    Python, results of any size brought back to a driver with ``driver_memory`` (at 10M
    patients in 16 shards, a KPI file's sums were 57 MB for shard 0)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as e:
        raise UsageError("PySpark is not installed", 'install the extra: pip install -e ".[spark]"') from e
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    java_options = f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()}"
    builder = (SparkSession.builder.master(master).appName("casefind")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .config("spark.driver.maxResultSize", "0").config("spark.driver.memory", driver_memory)
               .config("spark.driver.extraJavaOptions", java_options)
               .config("spark.executor.extraJavaOptions", java_options))
    try:
        spark = builder.getOrCreate()
    except Exception as e:  # no Java, a bad master URL: pyspark's own exception types vary by release
        raise UsageError(f"Spark could not start ({type(e).__name__}: {str(e).strip().splitlines()[0][:200]})",
                         "Spark needs Java 17 (java -version) and a reachable --master, e.g. local[2]",
                         option="--master") from e
    spark.sparkContext.setLogLevel("ERROR")
    return spark
