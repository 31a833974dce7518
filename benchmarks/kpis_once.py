"""12 months of ``triple_aim.yml`` once on a sharded store, against its DuckDB peer once.

    python benchmarks/kpis_once.py SOURCE SHARDED_STORE

test_bench_scale.py's KPI test with one timed run of each contender instead of a checked
run and a timed one: at 10M patients each run takes over ten minutes. Ours is computed as
``casefind kpi`` computes it before disclosure control; the peer is one DuckDB query per
measure over all 12 periods, over SOURCE's Parquet (kpi_peers.run_all); every practice sum
is checked to agree. Prints the seconds, ours' peak RSS (before the peer runs) and the ratio."""
from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import kpi_peers
import peers
from casefind.kpis import compute
from casefind.kpis.sharded import compute_sharded
from casefind.store.sharded import ShardedStore
from test_bench_kpi_peers import check_same, peer_sums, practice_sums
from test_bench_scale import PERIODS, TRIPLE_AIM


def main(source: Path, store: ShardedStore) -> None:
    t = time.perf_counter()
    ours = compute_sharded(store, compute.compile_for(TRIPLE_AIM, PERIODS), "bench")
    t_ours = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"ours {t_ours:.2f} s, {ours.num_rows} rows, peak RSS {peak:.2f} GB", flush=True)
    t = time.perf_counter()
    peer = kpi_peers.run_all(peers.parquet_views(source), [p.end for p in PERIODS])
    t_peer = time.perf_counter() - t
    print(f"peer {t_peer:.2f} s; practice sums compared: {check_same(practice_sums(ours), peer_sums(peer))}")
    print(f"peer / ours {t_peer / t_ours:.2f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), ShardedStore(sys.argv[2]))
