"""Which pinned programs a start may reuse, and which an upgrade unpins (pure parts)."""

from __future__ import annotations


from ctl.dataplane import buildid
from ctl.dataplane.loader import stale_maps, superseded_pins

BUILD, OLD = "0123456789abcdef", "fedcba9876543210"


def test_program_pins_of_other_builds_are_superseded_only_when_the_build_is_known():
    names = [f"prog_{BUILD}_xdp", f"prog_{OLD}_xdp", f"prog_{OLD}_tc_ingress", f"prog_{OLD}_tc_egress",
             "prog_notadigest_xdp", f"prog_{OLD}_other", "ct_fwd_v2", "ct_fwd_v1"]
    assert superseded_pins(names, BUILD) == sorted(["ct_fwd_v1", f"prog_{OLD}_xdp", f"prog_{OLD}_tc_ingress",
                                                    f"prog_{OLD}_tc_egress"])
    assert superseded_pins(names) == ["ct_fwd_v1"]


def test_programs_are_stale_when_a_map_is_missing_or_replaced():
    pinned = {"frontends": 10, "ct_fwd": 11, "a_long_map_name_x": 12}
    assert stale_maps(pinned, {("frontends", 10), ("ct_fwd", 11), ("scratch_map", 3)}) == []
    assert stale_maps(pinned, {("frontends", 10), ("ct_fwd", 9)}) == ["ct_fwd"]
    assert stale_maps({**pinned, "vips": None}, {("frontends", 10)}) == ["vips"]
    # the kernel keeps 15 bytes of a name
    assert stale_maps(pinned, {("a_long_map_name", 4)}) == ["a_long_map_name"]


def test_the_build_digest_follows_every_input():
    base = dict(sources=["int x;"], cflags=["-DA=1"], kernel="6.18", bcc="0.26.0", layout="L")
    digest = buildid.digest(**base)
    assert digest == buildid.digest(**base) and len(digest) == 16
    for field, other in (("sources", ["int y;"]), ("cflags", ["-DA=2"]), ("kernel", "6.1"),
                         ("bcc", "0.27.0"), ("layout", "M")):
        assert buildid.digest(**{**base, field: other}) != digest, field
    # parts cannot run into each other
    assert buildid.digest(**{**base, "sources": ["int x;", "-DA=1"], "cflags": []}) != digest


def test_this_build_has_a_digest_without_importing_bcc():
    import sys

    before = "bcc" in sys.modules
    assert len(buildid.build_digest(["-DX=1"])) == 16
    assert buildid.bcc_version() != "none"
    assert ("bcc" in sys.modules) == before
    assert buildid.build_digest(["-DX=1"]) != buildid.build_digest(["-DX=2"])
