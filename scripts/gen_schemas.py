"""Generates the Gateway API schemas the package validates against (ctl/api/schemas/).

Reads the upstream release CRDs (default ../shared/gateway-api/v1.6.1/crd beside the
repository) and writes, per channel and kind, the openAPIV3Schema of every served
version without prose descriptions (ctl.api.crds.validation_schema), plus the upstream
version and its license notice. Run it again after changing the release or the
reduction; tests/unit/test_schemas.py fails while the committed data is stale.

    python scripts/gen_schemas.py [--crds DIR] [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from ctl.api import crds

REPO = Path(__file__).resolve().parents[1]
UPSTREAM = REPO.parent / "shared" / "gateway-api" / crds.UPSTREAM_VERSION
OUTPUT = REPO / "ctl" / "api" / crds.SCHEMAS
BUNDLE_VERSION = "gateway.networking.k8s.io/bundle-version"

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def generate(crd_dir: Path, license_file: Path) -> dict[str, str]:
    """Relative path -> text of every file of the package data, in memory."""
    files: dict[str, str] = {}
    for channel in crds.CHANNELS:
        for kind in crds.PLURALS:
            path = crds.release_crd_path(crd_dir, channel, kind)
            if not path.is_file():
                continue
            crd = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 - safe
            bundle = crd["metadata"].get("annotations", {}).get(BUNDLE_VERSION)
            if bundle != crds.UPSTREAM_VERSION:
                raise SystemExit(f"{path}: bundle-version {bundle}, expected {crds.UPSTREAM_VERSION}")
            data = {"kind": kind, "channel": channel, "versions": crds.served_schemas(crd)}
            files[f"{channel}/{crds.PLURALS[kind]}.json"] = (
                json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n"
            )
    files["UPSTREAM.json"] = json.dumps({
        "project": "https://github.com/kubernetes-sigs/gateway-api",
        "version": crds.UPSTREAM_VERSION,
        "content": "openAPIV3Schema of every served version of the release CRDs (standard and experimental channels), descriptions removed",
        "license": "Apache-2.0 (text in LICENSE beside this file)",
        "generator": "scripts/gen_schemas.py",
    }, indent=2) + "\n"
    files["LICENSE"] = license_file.read_text(encoding="utf-8")
    return files


def on_disk(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(root.rglob("*")) if path.is_file()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crds", type=Path, default=UPSTREAM / "crd", help="release CRD directory")
    parser.add_argument("--license", type=Path, default=UPSTREAM / "LICENSE", help="upstream LICENSE")
    parser.add_argument("--check", action="store_true", help="exit 1 if ctl/api/schemas is stale")
    args = parser.parse_args()
    wanted = generate(args.crds, args.license)
    present = on_disk(OUTPUT) if OUTPUT.is_dir() else {}
    if args.check:
        stale = sorted(name for name in wanted.keys() | present.keys() if wanted.get(name) != present.get(name))
        for name in stale:
            print(f"stale: {OUTPUT / name}", file=sys.stderr)
        return 1 if stale else 0
    for name in present.keys() - wanted.keys():
        (OUTPUT / name).unlink()
    for name, text in wanted.items():
        target = OUTPUT / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    print(f"wrote {len(wanted)} files to {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
