"""The Kubernetes source with the official client against the API emulator: the same
snapshot as the file source, watches that resume, relist on 410 and survive the API
server going away, and bursts coalesced into one snapshot."""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime
from ipaddress import ip_address
from pathlib import Path

import pytest
import yaml

from ctl.sources import load_directory
from ctl.sources.kubernetes import KubernetesSource
from ctl.translate import TranslateConfig, translate

from .conftest import api_client

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "standalone"


def example_documents() -> list[dict]:
    return [doc for path in sorted(EXAMPLES.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


@pytest.fixture
def cluster(kubeapi):
    """The emulator holding the standalone example, and a started source watching it."""
    api, url = kubeapi
    for doc in example_documents():
        api.put(doc)
    source = KubernetesSource(api_client(url), watch_timeout=30)
    source.start()
    try:
        wait_for(lambda: source.synced, what="the first list of every kind")
        yield api, source
    finally:
        source.stop()


def slice_addresses(source: KubernetesSource, name: str) -> list[str]:
    for endpoint_slice in source.load().snapshot.endpoint_slices:
        if endpoint_slice.name == name:
            return [a for e in endpoint_slice.endpoints for a in e.addresses]
    return []


def set_slice(api, name: str, addresses: list[str]) -> None:
    doc = next(d for d in example_documents() if d["kind"] == "EndpointSlice" and d["metadata"]["name"] == name)
    doc = copy.deepcopy(doc)
    doc["endpoints"] = [{"addresses": [a], "conditions": {"ready": True}} for a in addresses]
    api.put(doc)


def test_cluster_snapshot_translates_like_the_same_files(cluster):
    _, source = cluster
    config = TranslateConfig(now=datetime(2000, 1, 1, tzinfo=UTC), snat_addresses=(ip_address("10.99.10.1"),))
    from_cluster = translate(source.load().snapshot, config).desired
    from_files = translate(load_directory(EXAMPLES).snapshot, config).desired
    assert from_cluster == from_files
    assert len(from_cluster.services) == 2
    assert source.load().problems == ()


def test_dropped_watches_resume_from_the_last_version_without_relisting(cluster):
    api, source = cluster
    relists = source.relists
    api.drop_watches()
    set_slice(api, "be-a-1", ["10.99.10.2", "10.99.10.3"])
    wait_for(lambda: slice_addresses(source, "be-a-1") == ["10.99.10.2", "10.99.10.3"], what="the edit")
    api.drop_watches()
    set_slice(api, "be-a-1", ["10.99.10.4"])
    wait_for(lambda: slice_addresses(source, "be-a-1") == ["10.99.10.4"], what="the second edit")
    assert source.relists == relists, "a dropped stream resumes from its resourceVersion"
    watches = [r for r in api.requests_since() if r.verb == "watch" and r.resource == "endpointslices"]
    assert len(watches) >= 3


def test_gone_watch_relists_and_sees_changes_made_meanwhile(cluster):
    api, source = cluster
    relists = source.relists
    # A write the slice watch does not see moves the cluster on; compaction then makes
    # the version the slice watch holds too old.
    api.put({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "x", "namespace": "default"}, "spec": {}})
    api.state.compact()
    api.drop_watches()
    set_slice(api, "be-b-1", ["10.99.11.9"])
    wait_for(lambda: slice_addresses(source, "be-b-1") == ["10.99.11.9"], what="the edit after 410")
    wait_for(lambda: source.relists > relists, what="a relist")

    relists = source.relists
    api.expire_next_watch()
    api.drop_watches()
    wait_for(lambda: source.relists > relists, what="a relist after one 410")


def test_api_server_away_keeps_the_last_snapshot_and_converges_after(cluster):
    api, source = cluster
    before = source.load()
    api.go_down()
    time.sleep(2)
    assert source.load() == before, "nothing changes while the API server is away"
    # Changes made while the agent cannot see them (as on a restarted API server).
    set_slice(api, "be-c-1", ["10.99.12.7"])
    api.come_back()
    wait_for(lambda: slice_addresses(source, "be-c-1") == ["10.99.12.7"], timeout=20, what="convergence")
    assert source.watch_errors > 0


def test_a_burst_of_fifty_slice_changes_is_one_snapshot(cluster):
    api, source = cluster
    snapshots = source.snapshots()
    next(snapshots)  # the current state
    for i in range(50):
        set_slice(api, "be-a-1", [f"10.99.10.{10 + i}"])
    first = next(snapshots)
    got = [a for e in next(s for s in first.snapshot.endpoint_slices if s.name == "be-a-1").endpoints for a in e.addresses]
    # One snapshot holds the whole burst (the settle window ends it at most 0.5 s in).
    if got != ["10.99.10.59"]:
        second = next(snapshots)
        got = [a for e in next(s for s in second.snapshot.endpoint_slices if s.name == "be-a-1").endpoints for a in e.addresses]
    assert got == ["10.99.10.59"]


def test_idle_work_can_tell_that_a_change_arrived(cluster):
    """idle() gets a cheap check that a change waits, so that the agent's read-back of
    its maps can give way to it."""
    api, source = cluster
    checks: list[bool] = []

    def idle(edit_waiting) -> None:
        if checks:
            return
        checks.append(edit_waiting())
        set_slice(api, "be-a-1", ["10.99.10.77"])  # arrives during the idle work
        checks.append(wait_for(edit_waiting, what="the change seen as waiting"))

    snapshots = source.snapshots(idle=idle)
    next(snapshots)  # the current state
    changed = next(snapshots)
    assert checks == [False, True]
    got = [a for e in next(s for s in changed.snapshot.endpoint_slices if s.name == "be-a-1").endpoints
           for a in e.addresses]
    assert got == ["10.99.10.77"]


def test_an_invalid_edit_keeps_the_last_valid_version_and_is_reported(cluster):
    api, source = cluster
    route = next(d for d in example_documents() if d["kind"] == "TCPRoute")
    broken = copy.deepcopy(route)
    broken["spec"]["rules"][0]["backendRefs"][0]["port"] = 70000
    api.put(broken)
    loaded = wait_for(lambda: (x := source.load()).problems and x, what="the problem")
    assert "TCPRoute default/db" in str(loaded.problems[0]) and "70000" in str(loaded.problems[0])
    kept = next(r for r in loaded.snapshot.tcp_routes if r.name == "db")
    assert kept.spec.rules[0].backend_refs[0].port == 8080, "the last valid version keeps serving"
    api.put(route)
    wait_for(lambda: not source.load().problems, what="the fix")


def test_only_secrets_that_gateways_reference_are_read_by_name(cluster):
    api, source = cluster
    for name in ("cert", "unrelated"):
        api.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "default"},
                 "type": "kubernetes.io/tls", "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"}})
    assert source.load().snapshot.secrets == ()
    gateway = next(copy.deepcopy(d) for d in example_documents() if d["kind"] == "Gateway")
    gateway["spec"]["listeners"].append({"name": "tls", "protocol": "HTTPS", "port": 443,
                                         "tls": {"certificateRefs": [{"name": "cert"}]}})
    api.put(gateway)
    secrets = wait_for(lambda: source.load().snapshot.secrets, what="the referenced Secret")
    assert [s.name for s in secrets] == ["cert"] and secrets[0].value("tls.crt") == b"cert"
    used = {(r.verb, r.resource) for r in api.requests_since() if r.resource == "secrets"}
    assert used == {("get", "secrets")}, "Secrets are never listed or watched"


def test_fields_of_newer_versions_are_pruned_not_refused(cluster):
    api, source = cluster
    route = next(copy.deepcopy(d) for d in example_documents() if d["kind"] == "TCPRoute")
    route["spec"]["rules"][0]["futureField"] = "from a newer CRD"
    route["metadata"]["managedFields"] = [{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1"}]
    api.put(route)
    wait_for(lambda: any(r.generation == 2 for r in source.load().snapshot.tcp_routes), what="the new generation")
    assert source.load().problems == ()
