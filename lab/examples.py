"""The standalone example configuration (examples/standalone) as the tiers replay it."""

from __future__ import annotations

import yaml

from .netlab import PROJECT_ROOT

EXAMPLES = PROJECT_ROOT / "examples" / "standalone"


def example_files() -> dict[str, str]:
    """File name -> text of every example manifest."""
    return {p.name: p.read_text() for p in sorted(EXAMPLES.glob("*.yaml"))}


def with_tcp_weights(a: int, b: int, c: int) -> dict[str, str]:
    """The example configuration with the TCPRoute's three backend weights replaced."""
    files = example_files()
    docs = list(yaml.safe_load_all(files["30-routes.yaml"]))
    tcp_route = next(d for d in docs if d["kind"] == "TCPRoute")
    for ref, weight in zip(tcp_route["spec"]["rules"][0]["backendRefs"], (a, b, c)):
        ref["weight"] = weight
    files["30-routes.yaml"] = yaml.safe_dump_all(docs, sort_keys=False)
    return files
