"""Generates ctl/api/core-fields.json: the structural schemas strict field
validation compares the core kinds (Service, EndpointSlice, Namespace, Secret) and every
object's metadata against, derived from the official Kubernetes client's models
(ctl.api.strict.derive_client_schema). The agent reads this file instead of importing
the client at every start. Run it again after upgrading the kubernetes package;
tests/unit/test_strict.py fails while the committed file is stale.

    python scripts/gen_core_fields.py [--check]
"""

from __future__ import annotations

import argparse
import sys

from ctl.api import strict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the file is up to date")
    args = parser.parse_args()
    text = strict.core_fields_text()
    if args.check:
        if strict.CORE_FIELDS.read_text(encoding="utf-8") != text:
            print(f"{strict.CORE_FIELDS} is stale: run python scripts/gen_core_fields.py", file=sys.stderr)
            return 1
        return 0
    strict.CORE_FIELDS.write_text(text, encoding="utf-8")
    print(f"wrote {strict.CORE_FIELDS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
