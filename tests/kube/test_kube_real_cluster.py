"""Against a real cluster, when KUBECONFIG points at a reachable one; skipped (with the
reason) otherwise. Nothing here needs the data path, and everything created is removed:
the writer election and node report use a temporary namespace."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from ctl.agent.cluster import ClusterStatus
from ctl.agent.progress import NODE_LEASE_PREFIX, STATUS_LEASE_NAME
from ctl.sources.kubernetes import KubernetesSource, api_client

from .test_kube_source import wait_for


def _reachable_cluster() -> tuple[client.ApiClient | None, str]:
    path = os.environ.get("KUBECONFIG")
    if not path:
        return None, "KUBECONFIG is not set: no real cluster to test against"
    if not os.path.isfile(path):
        return None, f"KUBECONFIG={path} does not exist"
    try:
        api = api_client(path)
        client.VersionApi(api).get_code(_request_timeout=(3, 5))
    except Exception as error:  # noqa: BLE001 - any failure means: not reachable
        return None, f"the cluster in KUBECONFIG={path} is not reachable: {type(error).__name__}: {error}"
    return api, ""


@pytest.fixture(scope="module")
def real_api():
    api, reason = _reachable_cluster()
    if api is None:
        pytest.skip(reason)
    return api


@pytest.fixture
def scratch_namespace(real_api):
    name = f"xdpgw-test-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(real_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as error:
            if error.status != 404:
                raise


def test_the_source_lists_and_watches_a_real_cluster(real_api, scratch_namespace):
    source = KubernetesSource(real_api)
    source.start()
    try:
        wait_for(lambda: source.synced, timeout=60, what="the first list of every kind")
        names = {ns.name for ns in source.load().snapshot.namespaces}
        assert {"default", scratch_namespace} <= names
        core = client.CoreV1Api(real_api)
        core.create_namespaced_service(scratch_namespace, client.V1Service(
            metadata=client.V1ObjectMeta(name="probe"),
            spec=client.V1ServiceSpec(ports=[client.V1ServicePort(name="tcp", port=8080)])))
        wait_for(lambda: any(s.name == "probe" and s.namespace == scratch_namespace
                             for s in source.load().snapshot.services), timeout=30, what="the watched Service")
    finally:
        source.stop()


def test_the_writer_election_and_node_report_on_a_real_cluster(real_api, scratch_namespace):
    source = KubernetesSource(real_api, kinds=())
    writers = [ClusterStatus(real_api, source, node, scratch_namespace, "xdp-gateway.io/gateway-controller",
                             lambda: (), lease_duration=5) for node in ("node-a", "node-b")]
    leaders = [writer.elect() for writer in writers]
    assert leaders == [True, False], "the first takes the Lease, the second sees it held"
    for writer in writers:
        writer.renew_node_lease()
    leases = client.CoordinationV1Api(real_api)
    assert leases.read_namespaced_lease(STATUS_LEASE_NAME, scratch_namespace).spec.holder_identity == "node-a"
    assert {r.node for r in writers[1].node_reports()} == {"node-a", "node-b"}
    time.sleep(6)  # node-a stops renewing: its Lease expires on node-b's clock
    assert writers[1].elect() is True
    lease = leases.read_namespaced_lease(STATUS_LEASE_NAME, scratch_namespace)
    assert lease.spec.holder_identity == "node-b" and lease.spec.lease_transitions == 1
    assert leases.read_namespaced_lease(f"{NODE_LEASE_PREFIX}node-b", scratch_namespace).spec.holder_identity == "node-b"
