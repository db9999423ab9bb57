"""The plan of a restarted agent on maps that already hold the configuration: nothing
to write, and ideally nothing to build. Plans DIR once (as a cold start), takes the
maps that plan leaves as the actual state, drops every table the process has cached
and times a second plan, as the first reconcile after a restart does.

    python -m bench.restart_plan --config DIR

Prints one JSON object (seconds wall and CPU, ops; "code" names the planner that ran).
To compare with an older version, extract its `ctl` (`git archive <commit> ctl | tar -x
-C OLD`) and run, outside the repository (`-m` puts the working directory first on
sys.path), `PYTHONPATH=OLD:REPO python -m bench.restart_plan ...` interleaved with
`PYTHONPATH=REPO python -m bench.restart_plan ...`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from ipaddress import ip_address
from pathlib import Path

import ctl.dataplane.plan as planner
import ctl.sources
from ctl.translate import TranslateConfig, translate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.restart_plan")
    parser.add_argument("--config", required=True)
    parser.add_argument("--snat-address", default="10.99.0.1")
    args = parser.parse_args(argv)
    loaded = ctl.sources.load_directory(Path(args.config), ctl.sources.ParseCache())
    translation = translate(loaded.snapshot, TranslateConfig(
        now=datetime.now(timezone.utc), addresses=(), snat_addresses=(ip_address(args.snat_address),)))
    limits, config = planner.Limits(16381, 16384, 131072), planner.DataplaneConfig()
    first = planner.plan(translation.desired, planner.ActualState(), config, limits)
    ops = [op for op in first.ops]
    actual = planner.ActualState(
        frontends={op.key: op.record for op in ops if isinstance(op, planner.PutFrontend)},
        backends={op.backend_id: op.endpoint for op in ops if isinstance(op, planner.PutBackend)},
        table_digests={op.service_id: op.digest for op in ops if isinstance(op, planner.PutTable)},
        tables=frozenset(op.service_id for op in ops if isinstance(op, planner.PutTable)),
        vips={op.address: op.count for op in ops if isinstance(op, planner.PutVip)},
        config=config,
        owners={op.service_id: op.owner for op in ops if isinstance(op, planner.PutOwner)},
        members={(op.service_id, op.backend_id): op.weight_milli for op in ops
                 if isinstance(op, planner.PutMember)},
    )
    # A restarted process has no table or digest cached (older versions kept a memo).
    if hasattr(planner, "_digests"):
        planner._digests.clear()
    if hasattr(planner, "_TABLE_CACHE"):
        planner._TABLE_CACHE.clear()
    else:  # older versions memoised builds with lru_cache
        planner._build_table.cache_clear()
    wall, cpu = time.perf_counter(), time.process_time()
    again = planner.plan(translation.desired, actual, config, limits)
    print(json.dumps({"code": planner.__file__, "services": len(translation.desired.services),
                      "restart_plan_wall": round(time.perf_counter() - wall, 3),
                      "restart_plan_cpu": round(time.process_time() - cpu, 3), "ops": len(again.ops)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
