"""Node reports and the status stanzas the Kubernetes status writer writes: pure."""

from __future__ import annotations

from datetime import UTC, datetime

from ctl.agent.progress import NodeReport, status_stanza, with_node_progress, without_our_parents
from ctl.api import ParentReference
from ctl.translate import Condition, ObjectStatus, RouteParentStatus

OURS = "xdp-gateway.io/gateway-controller"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 1, 2, tzinfo=UTC)


def gateway(programmed: bool = True) -> ObjectStatus:
    return ObjectStatus("Gateway", "default", "edge", conditions=(
        Condition("Accepted", "True", "Accepted", "", 2, T0),
        Condition("Programmed", "True" if programmed else "False", "Programmed" if programmed else "Invalid", "", 2, T0),
    ))


def route(generation: int = 3) -> ObjectStatus:
    parent = RouteParentStatus(ParentReference(name="edge", namespace="default"), OURS,
                               (Condition("Accepted", "True", "Accepted", "", generation, T0),))
    return ObjectStatus("TCPRoute", "default", "db", parents=(parent,))


WANTED = {"Gateway/default/edge": 2, "TCPRoute/default/db": 3}


def programmed(statuses) -> Condition:
    return next(c for s in statuses if s.kind == "Gateway" for c in s.conditions if c.type == "Programmed")


def test_programmed_stays_true_only_when_every_node_holds_the_gateway_and_its_routes():
    up_to_date = NodeReport("a", WANTED)
    assert programmed(with_node_progress([gateway(), route()], WANTED, [up_to_date], T1)).status == "True"
    behind = NodeReport("b", {"Gateway/default/edge": 2, "TCPRoute/default/db": 2})
    condition = programmed(with_node_progress([gateway(), route()], WANTED, [up_to_date, behind], T1))
    assert (condition.status, condition.reason) == ("False", "Pending")
    assert "not yet programmed on b (of 2 nodes)" == condition.message
    assert condition.last_transition_time == T1


def test_a_failing_node_is_named_and_no_report_is_pending():
    failed = NodeReport("c", WANTED, error="cannot program the data path: map full")
    condition = programmed(with_node_progress([gateway(), route()], WANTED, [failed], T1))
    assert (condition.status, condition.reason) == ("False", "Invalid")
    assert condition.message == "programming failed on node c: cannot program the data path: map full"
    nobody = programmed(with_node_progress([gateway()], WANTED, [], T1))
    assert (nobody.status, nobody.reason) == ("False", "Pending")


def test_a_gateway_translation_found_unprogrammable_is_left_as_it_is():
    condition = programmed(with_node_progress([gateway(programmed=False)], WANTED, [], T1))
    assert (condition.reason, condition.last_transition_time) == ("Invalid", T0)


def test_node_report_round_trips_and_survives_garbage():
    report = NodeReport("a", WANTED, "")
    assert NodeReport.from_annotation("a", report.to_annotation()) == report
    assert NodeReport.from_annotation("a", "{not json").error.startswith("unreadable")


def test_route_stanza_keeps_other_controllers_and_carries_transition_times():
    theirs = {"parentRef": {"name": "other"}, "controllerName": "example.com/x", "conditions": []}
    ours_before = {"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "default", "name": "edge"},
                   "controllerName": OURS,
                   "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                                   "observedGeneration": 2, "lastTransitionTime": "2025-06-01T00:00:00Z"}]}
    stanza = status_stanza(route(), {"parents": [theirs, ours_before]}, OURS)
    assert stanza["parents"][0] == theirs
    (accepted,) = stanza["parents"][1]["conditions"]
    assert accepted["lastTransitionTime"] == "2025-06-01T00:00:00Z" and accepted["observedGeneration"] == 3
    assert without_our_parents({"parents": [theirs, ours_before]}, OURS) == {"parents": [theirs]}
    assert without_our_parents({"parents": [theirs]}, OURS) is None
