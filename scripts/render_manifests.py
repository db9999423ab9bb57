"""Renders the Helm chart into plain manifests for users without Helm.

    python scripts/render_manifests.py           # writes deploy/manifests/xdp-gateway.yaml
    python scripts/render_manifests.py --check   # exit 1 if that file is stale

Rendering is Helm's own Go template engine (Helm v4's library, from the helm-python-sdk
wheel, a dev dependency): offline, no cluster and no download, so the output is what
`helm template` prints. tests/deploy uses the same functions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "xdp-gateway"
MANIFESTS = ROOT / "deploy" / "manifests" / "xdp-gateway.yaml"
RELEASE = "xdp-gateway"
NAMESPACE = "xdp-gateway"

# Helm's install order for the kinds the chart has: what others refer to comes first.
_KIND_ORDER = ["Namespace", "ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRoleBinding",
               "Role", "RoleBinding", "Service", "DaemonSet", "GatewayClass", "ServiceMonitor"]

_HEADER = f"""\
# xdp-gateway, rendered from deploy/helm/xdp-gateway with its default values by
# scripts/render_manifests.py (do not edit: a test fails when this file is stale).
# Install the Gateway API CRDs first (the upstream release's standard-install.yaml plus
# the experimental TCPRoute/UDPRoute/TLSRoute), then: kubectl apply -f xdp-gateway.yaml
# The gateway interfaces default to eth0; for others use the chart or edit the
# DaemonSet's --interface arguments.
"""


class RenderError(RuntimeError):
    """The chart did not render (a template error or a value the chart refuses)."""


def render(values: dict[str, Any] | None = None, *, release: str = RELEASE,
           namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` would produce them."""
    import helm_python as helm

    try:
        with helm.Chart.load(str(CHART)) as chart:
            return chart.render(values or {}, name=release, namespace=namespace, is_install=True)
    except helm.HelmError as error:
        raise RenderError(str(error)) from error


def _kind_rank(obj: dict[str, Any]) -> int:
    return _KIND_ORDER.index(obj["kind"]) if obj["kind"] in _KIND_ORDER else len(_KIND_ORDER)


def documents(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """The Kubernetes objects of a render, in install order (NOTES.txt is not one)."""
    objects = []
    for path in sorted(rendered):
        if path.endswith((".yaml", ".yml")):
            objects.extend(doc for doc in yaml.safe_load_all(rendered[path]) if doc)
    return sorted(objects, key=_kind_rank)


def plain_manifests() -> str:
    """The file users apply with kubectl: the namespace, then each template's output as
    Helm wrote it (comments kept), templates in install order."""
    rendered = render()
    files = []
    for path, text in rendered.items():
        objects = [doc for doc in yaml.safe_load_all(text) if doc] if path.endswith(".yaml") else []
        if objects:
            files.append((min(map(_kind_rank, objects)), path, text.strip()))
    namespace = yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}, sort_keys=False)
    body = "".join(f"---\n# Source: {path}\n{text}\n" for _, path, text in sorted(files))
    return f"{_HEADER}---\n{namespace}{body}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the manifests are stale")
    args = parser.parse_args(argv)
    try:
        text = plain_manifests()
    except RenderError as error:
        print(f"render_manifests: {CHART}: {error}", file=sys.stderr)
        return 1
    relative = MANIFESTS.relative_to(ROOT)
    if args.check:
        if not MANIFESTS.is_file() or MANIFESTS.read_text() != text:
            print(f"{relative} is stale: run python scripts/render_manifests.py", file=sys.stderr)
            return 1
        print(f"{relative} is up to date")
        return 0
    MANIFESTS.parent.mkdir(parents=True, exist_ok=True)
    MANIFESTS.write_text(text)
    print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
