"""The builds that the report's before/after parts compare this tree against, named once.

Each is a commit of this repository (a fresh clone has them: CI clones the whole history),
chosen as the last state before a piece of work whose effect the report must show.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Baseline:
    commit: str
    what: str
    why: str


# The data path before issue 10's per-packet work (next hop cached per flow, no clock read
# or entry write on every established packet, one conntrack lookup fewer): the aims
# "established <= 0.5x, new flow <= 0.70x of today" are set against this build.
PACKET = Baseline(
    "f75a9c3",
    "the data path before issue 10's per-packet work",
    "main just before the SNAT redesign and the per-flow next-hop cache (3205a58) landed, so "
    "every per-packet change of issue 10 is on the 'after' side",
)

# The control plane before issue 10's scale work on loading, translation and planning (the
# collector kept out of a reconcile, YAML in one walk, compiled schema check, shared
# endpoint conditions, cached hashes): what "before" means in the breakdown's table.
CONTROL = Baseline(
    "ffb813f",
    "the control plane before the loading, translation and planner work",
    "main just before the first of those commits (c493411, collector kept out of a reconcile); "
    "it already has per-service Maglev sizes and batched builds, so the comparison shows the "
    "later work, and its ctl reads the same generated configuration",
)


def markdown() -> str:
    return "\n".join(
        f"- {name}: `{b.commit}`, {b.what}: {b.why}."
        for name, b in (("Per-packet before/after", PACKET), ("Control-plane before/after", CONTROL))
    ) + "\n"
