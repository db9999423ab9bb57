"""`gwctl run` as the agent loaded its programs before the compiler child: bcc compiles
in the agent's own process (clang/LLVM stay mapped there) and nothing is pinned for the
next start, which compiles again. bench.control's restart rows run it beside the real
agent in the same run, for before/after figures.

    python -m bench.inprocess_agent run --config DIR ...   (the arguments of gwctl)
"""

from __future__ import annotations

from ctl import cli
from ctl.dataplane import loader

if __name__ == "__main__":
    loader.load_programs = loader.compile_programs  # Dataplane.load looks it up at call time
    cli.main()
