"""The ADS stream logic without Envoy: warming order, one response per type in flight,
removals last, ACK/NACK attribution per resource."""

from __future__ import annotations

from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from l7sidecar.xds import CLUSTER, ENDPOINT, LISTENER, ROUTE, AdsServer, ResourceState, _Stream, attribute_nack
from tests.l7.resources import cluster, endpoints, http_listener, route_config, snapshot


def request(type_url, nonce="", names=(), error=""):
    r = discovery_pb2.DiscoveryRequest(type_url=type_url, response_nonce=nonce, resource_names=list(names))
    if error:
        r.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return r


def config(*names):
    return snapshot(*(cluster(n) for n in names), *(endpoints(n, ("10.0.0.1", 80)) for n in names),
                    http_listener("l1", "0.0.0.0", 80, "r1"), route_config("r1", [(f"/{n}", n) for n in names]))


def drive(stream, snap, answer_error=None):
    """Plays Envoy: subscribes like Envoy does and ACKs (or NACKs) every response."""
    sent = []
    pending = [request(t) for t in (CLUSTER, LISTENER) if t not in stream.subscribed]
    while True:
        for r in pending:
            stream.handle(r)
        pending = []
        response = stream.next_response(snap)
        if response is None:
            return sent
        sent.append((response.type_url, tuple(sorted(_name(a) for a in response.resources))))
        error = answer_error(response) if answer_error else ""
        pending.append(request(response.type_url, response.nonce,
                               stream.subscribed.get(response.type_url) or (), error))
        if response.type_url == CLUSTER and ENDPOINT not in stream.subscribed:
            pending.append(request(ENDPOINT, names=[_name(a) for a in response.resources]))
        if response.type_url == LISTENER and ROUTE not in stream.subscribed:
            pending.append(request(ROUTE, names=["r1"]))


def _name(packed):
    from envoy.config.cluster.v3 import cluster_pb2
    from envoy.config.endpoint.v3 import endpoint_pb2
    from envoy.config.listener.v3 import listener_pb2
    from envoy.config.route.v3 import route_pb2
    for cls, key in ((cluster_pb2.Cluster, "name"), (endpoint_pb2.ClusterLoadAssignment, "cluster_name"),
                     (listener_pb2.Listener, "name"), (route_pb2.RouteConfiguration, "name")):
        if packed.Is(cls.DESCRIPTOR):
            msg = cls()
            packed.Unpack(msg)
            return getattr(msg, key)
    raise AssertionError(packed.type_url)


def test_warming_order_then_removals_last(tmp_path):
    server = AdsServer(tmp_path / "ads.sock")
    stream = _Stream(server, "test")
    first = drive(stream, config("a", "b"))
    assert [t for t, _ in first] == [CLUSTER, ENDPOINT, LISTENER, ROUTE]
    # Drop b: routes change first while b is still served, then b is removed.
    second = drive(stream, config("a"))
    types = [t for t, _ in second]
    assert types[0] == ROUTE, second
    assert (CLUSTER, ("a",)) in second and types.index(CLUSTER) > types.index(ROUTE)
    assert (ENDPOINT, ("a",)) in second


def test_one_response_per_type_in_flight(tmp_path):
    server = AdsServer(tmp_path / "ads.sock")
    stream = _Stream(server, "test")
    stream.handle(request(CLUSTER))
    first = stream.next_response(config("a"))
    assert first.type_url == CLUSTER
    # A newer snapshot waits for the answer to the first response.
    assert stream.next_response(config("a", "b")) is None
    stream.handle(request(CLUSTER, first.nonce))
    assert stream.next_response(config("a", "b")).type_url == CLUSTER


def test_nack_is_pinned_on_named_resources_else_on_all_changed(tmp_path):
    assert attribute_nack("Error adding/updating listener(s) l2: bad", {"l1", "l2"}) == {"l2"}
    assert attribute_nack("Proto constraint validation failed", {"l1", "l2"}) == {"l1", "l2"}
    server = AdsServer(tmp_path / "ads.sock")
    server._snapshot = config("a")
    stream = _Stream(server, "test")
    drive(stream, config("a"), answer_error=lambda r: "bad route r1" if r.type_url == ROUTE else "")
    feedback = server._feedback_locked()
    assert feedback.state(ROUTE, "r1") is ResourceState.REJECTED
    assert feedback.rejected()[(ROUTE, "r1")] == "bad route r1"
    assert feedback.state(LISTENER, "l1") is ResourceState.ACKED
    assert feedback.state(CLUSTER, "a") is ResourceState.ACKED


def test_nothing_removed_while_envoy_runs_older_routes_after_a_nack(tmp_path):
    server = AdsServer(tmp_path / "ads.sock")
    stream = _Stream(server, "test")
    drive(stream, config("a", "b"))
    refused = drive(stream, config("a"), answer_error=lambda r: "bad" if r.type_url == ROUTE else "")
    assert (ROUTE, ("r1",)) in refused
    assert not any(t == CLUSTER for t, _ in refused)  # b stays: the old routes use it
    # A newer snapshot that Envoy accepts then prunes, after its routes.
    fixed = snapshot(cluster("a"), endpoints("a", ("10.0.0.1", 80)), http_listener("l1", "0.0.0.0", 80, "r1"),
                     route_config("r1", [("/fixed", "a")]))
    accepted = drive(stream, fixed)
    assert [t for t, _ in accepted] == [ROUTE, CLUSTER, ENDPOINT], accepted
    assert (CLUSTER, ("a",)) in accepted


def test_nothing_is_served_before_the_first_snapshot(tmp_path):
    """A restarted agent must not answer Envoy's reconnect with an empty config."""
    import grpc
    from envoy.service.discovery.v3 import ads_pb2_grpc

    server = AdsServer(tmp_path / "ads.sock")
    server.start()
    try:
        with grpc.insecure_channel(f"unix:{tmp_path / 'ads.sock'}") as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            import queue as q
            requests: q.SimpleQueue = q.SimpleQueue()
            requests.put(request(CLUSTER))
            responses = stub.StreamAggregatedResources(iter(requests.get, None))
            first = []
            import threading
            reader = threading.Thread(target=lambda: first.append(next(responses)), daemon=True)
            reader.start()
            reader.join(1.0)
            assert not first  # nothing yet
            server.publish(config("a"))
            reader.join(5.0)
            assert first and first[0].type_url == CLUSTER and len(first[0].resources) == 1
            responses.cancel()
            requests.put(None)
    finally:
        server.stop()
