"""``casefind spark ingest|run|dataset|kpi|budget|diagnose|evaluate|quality``: the same
commands with a sharded store's shards built or evaluated on Apache Spark executors and
merged on the driver (docs/scale-out.md)."""
from __future__ import annotations

import re

import click

SPARK_HELP = """Run `ingest`, `run`, `dataset`, `kpi`, `budget`, `diagnose`, `evaluate` or `quality`
on Apache Spark: each shard of a sharded store (`casefind ingest SOURCE --store S --shards N`)
is built or evaluated on an executor by the same code as on one machine, and the results
are merged on the driver by the same functions, so the outputs are the single machine's.
`spark ingest` splits a table given as a folder of Parquet parts (a lake's) a part per
executor task, any other table on the driver, then builds each shard on an executor.
Needs the spark extra (pip install -e ".[spark]") and Java 17. Executors must see the
store (and, for ingest, the delivery and the identities store too) at the same path.

\b
  casefind spark ingest delivery/ --store big-store --shards 16
  casefind spark run rules/frail.yml --store big-store
  casefind spark --master local[4] kpi rules/kpis/triple_aim.yml --store big-store --period 2026-10
  casefind spark --master spark://head:7077 dataset rules/frail.yml -o frail.parquet --store /shared/store
  casefind spark budget ltc_year_of_care --year 2026-27 --store big-store
  casefind spark quality --store big-store --json > quality.json
"""


def _memory_size(ctx, param, value: str) -> str:
    """A JVM memory size as Spark reads one: a number and k, m, g or t (4g, 8192m)."""
    if not re.fullmatch(r"[1-9][0-9]*[kmgt]?", value.strip().lower()):
        raise click.BadParameter(f"{value!r} is not a memory size; give a number and a unit, e.g. 4g or 8192m")
    return value.strip().lower()


@click.group("spark", help=SPARK_HELP)
@click.option("--master", default="local[2]", show_default=True, metavar="URL",
              help="Spark master: local[N] for N worker threads on this machine, or a cluster's URL.")
@click.option("--driver-memory", default="4g", show_default=True, metavar="SIZE", callback=_memory_size,
              help="Memory of the Spark driver this command starts (spark.driver.memory), which gathers "
                   "every shard's result; in local mode it also runs the tasks.")
@click.pass_context
def spark_group(ctx: click.Context, master: str, driver_memory: str):
    from casefind.spark.mapper import SparkShards
    from casefind.store.sharded import mapped_by

    mapper = SparkShards(master=master, driver_memory=driver_memory)
    ctx.with_resource(mapped_by(mapper))
    ctx.call_on_close(mapper.stop)


def add_commands(*commands: click.Command) -> None:
    for command in commands:
        spark_group.add_command(command)


def _add_budget() -> None:
    """``casefind spark budget FILE --year Y``: ``casefind budget run`` with its shards on
    Spark (budgets/sharded.py's tasks); added here so that the main CLI lists it beside the others."""
    from casefind.cli_budget import run_command

    spark_group.add_command(run_command, "budget")


_add_budget()
