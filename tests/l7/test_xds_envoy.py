"""The ADS server and the Envoy supervisor against a real Envoy: configuration served in
the warming order, ACK and NACK tracked per resource, the last good config serving after
a NACK, Envoy restarted when it dies, adopted (not restarted) by a new supervisor, and
serving while the ADS server is away."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request

from l7sidecar.envoy import EnvoySupervisor, admin_get, bootstrap, envoy_binary, running_envoy
from l7sidecar.xds import CLUSTER, ENDPOINT, LISTENER, ROUTE, AdsServer, ResourceState

from .conftest import eventually, free_port
from .resources import cluster, endpoints, http_listener, route_config, snapshot


def get(port: int, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
        return response.read().decode()


def config(port: int, *backends, headers=None):
    return snapshot(*(cluster(b.name) for b in backends),
                    *(endpoints(b.name, ("127.0.0.1", b.port)) for b in backends),
                    http_listener("l1", "127.0.0.1", port, "r1"),
                    route_config("r1", [(f"/{b.name}", b.name) for b in backends], headers))


def test_bootstrap_passes_envoy_validation(tmp_path):
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(bootstrap("node-1", tmp_path / "ads.sock", tmp_path / "admin.sock")))
    result = subprocess.run([str(envoy_binary()), "--mode", "validate", "-c", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "configuration" in result.stdout and "OK" in result.stdout


def test_served_acked_nacked_and_last_good_keeps_serving(envoy_rig, backends):
    a, b = backends("alpha"), backends("beta")
    port = free_port()
    envoy_rig.ads.publish(config(port, a, b))
    assert eventually(lambda: get(port, "/alpha").startswith("alpha /alpha"))
    assert get(port, "/beta/x").startswith("beta /beta/x")
    feedback = eventually(lambda: (f := envoy_rig.ads.feedback()).acked(ROUTE) and f)
    for key in [(CLUSTER, "alpha"), (CLUSTER, "beta"), (ENDPOINT, "alpha"), (LISTENER, "l1"), (ROUTE, "r1")]:
        assert feedback.state(*key) is ResourceState.ACKED, key
    # The order of the first pushes: clusters, endpoints, listeners, routes.
    # A header value Envoy refuses: '%' starts a substitution command in Envoy.
    envoy_rig.ads.publish(config(port, a, b, headers={"x-share": "50%"}))
    feedback = eventually(lambda: (f := envoy_rig.ads.feedback()).rejected() and f)
    assert list(feedback.rejected()) == [(ROUTE, "r1")]
    assert "50%" in feedback.rejected()[(ROUTE, "r1")]
    assert feedback.state(LISTENER, "l1") is ResourceState.ACKED
    assert envoy_rig.feedback and envoy_rig.feedback[-1].rejected()  # the callback saw it too
    # Envoy kept the last good routes.
    assert get(port, "/alpha").startswith("alpha /alpha")
    # A good config again clears the rejection.
    envoy_rig.ads.publish(config(port, a, b, headers={"x-share": "50%%"}))
    eventually(lambda: envoy_rig.ads.feedback().state(ROUTE, "r1") is ResourceState.ACKED)
    assert not envoy_rig.ads.feedback().rejected()


def test_removed_cluster_goes_after_the_routes_that_used_it(envoy_rig, backends):
    a, b = backends("alpha"), backends("beta")
    port = free_port()
    envoy_rig.ads.publish(config(port, a, b))
    eventually(lambda: get(port, "/beta").startswith("beta"))
    envoy_rig.ads.publish(config(port, a))
    eventually(lambda: "beta" not in admin_get(envoy_rig.paths.admin_socket, "/clusters?format=json")[1])
    assert get(port, "/alpha").startswith("alpha")
    pushes = [r for r in envoy_rig.ads.history if r[1] in (CLUSTER, ROUTE)]
    last_route = max(i for i, (_, t, names) in enumerate(pushes) if t == ROUTE and names == ("r1",))
    pruned = min(i for i, (_, t, names) in enumerate(pushes) if t == CLUSTER and names == ("alpha",))
    assert pruned > last_route, pushes


def test_envoy_restarted_when_it_dies_and_reconfigured(envoy_rig, backends):
    a = backends("alpha")
    port = free_port()
    envoy_rig.ads.publish(config(port, a))
    eventually(lambda: get(port, "/alpha"))
    first = envoy_rig.supervisor.pid
    os.kill(first, signal.SIGKILL)
    eventually(lambda: envoy_rig.supervisor.pid != first and running_envoy(envoy_rig.paths))
    assert envoy_rig.supervisor.starts == 2
    assert eventually(lambda: get(port, "/alpha").startswith("alpha"))


def test_new_supervisor_adopts_envoy_which_serves_while_ads_is_away(envoy_rig, backends):
    a = backends("alpha")
    port = free_port()
    envoy_rig.ads.publish(config(port, a))
    eventually(lambda: get(port, "/alpha"))
    pid = envoy_rig.supervisor.pid
    # The agent goes away: its supervisor and its ADS server stop; Envoy stays.
    envoy_rig.supervisor.stop()
    envoy_rig.ads.stop()
    assert running_envoy(envoy_rig.paths) == pid
    for _ in range(20):
        assert get(port, "/alpha").startswith("alpha")
    # A new agent adopts it, and Envoy reconnects to the new ADS server.
    ads = AdsServer(envoy_rig.paths.ads_socket)
    ads.start()
    supervisor = EnvoySupervisor(envoy_rig.paths)
    try:
        assert supervisor.start() == pid
        assert supervisor.starts == 0
        ads.publish(config(port, a))
        eventually(lambda: ads.feedback().state(LISTENER, "l1") is ResourceState.ACKED)
        assert ads.feedback().connected
        assert get(port, "/alpha").startswith("alpha")
    finally:
        supervisor.stop()
        ads.stop()
    envoy_rig.ads = AdsServer(envoy_rig.paths.ads_socket)  # the fixture stops this one
    envoy_rig.ads.start()
