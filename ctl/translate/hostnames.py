"""Listener/route hostname intersection (HTTPRoute, GRPCRoute, TLSRoute only)."""

from __future__ import annotations

from collections.abc import Sequence


def _covers(wildcard: str, name: str) -> bool:
    # "*.example.com" covers any name with at least one more label: "a.example.com",
    # "a.b.example.com", and narrower wildcards such as "*.a.example.com".
    suffix = wildcard[1:]
    return name.endswith(suffix) and len(name) > len(suffix)


def _intersect(a: str, b: str) -> bool:
    if a == b:
        return True
    if a.startswith("*."):
        if _covers(a, b):
            return True
    if b.startswith("*."):
        return _covers(b, a)
    return False


def hostnames_intersect(listener_hostname: str | None, route_hostnames: Sequence[str]) -> bool:
    """A listener without hostname takes every route; a route without hostnames fits
    every listener; otherwise one pair must match, wildcards included."""
    if not listener_hostname or not route_hostnames:
        return True
    return any(_intersect(listener_hostname, hostname) for hostname in route_hostnames)
