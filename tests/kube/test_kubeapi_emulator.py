"""The API emulator behaves like an API server where the control plane depends on it,
checked through the official client over HTTP."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from .conftest import api_client

GROUP = "gateway.networking.k8s.io"


def _route(name: str, port: int = 8080) -> dict:
    return {"apiVersion": f"{GROUP}/v1alpha2", "kind": "TCPRoute",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "svc", "port": port}]}]}}


def test_resource_version_uid_generation_and_status_subresource(kubeapi):
    _, url = kubeapi
    custom = client.CustomObjectsApi(api_client(url))
    created = custom.create_namespaced_custom_object(GROUP, "v1alpha2", "default", "tcproutes", _route("db"))
    meta = created["metadata"]
    assert meta["generation"] == 1 and meta["uid"] and meta["creationTimestamp"].endswith("Z")
    first_rv = int(meta["resourceVersion"])

    status = {"status": {"parents": [{"controllerName": "example.com/other", "parentRef": {"name": "gw"}, "conditions": []}]}}
    with_status = custom.patch_namespaced_custom_object_status(GROUP, "v1alpha2", "default", "tcproutes", "db", status)
    assert with_status["metadata"]["generation"] == 1, "a status write is not a spec change"
    assert int(with_status["metadata"]["resourceVersion"]) > first_rv
    assert with_status["spec"] == created["spec"]

    # A spec write bumps generation and cannot touch status.
    edited = dict(with_status, spec=_route("db", 9090)["spec"], status={"parents": []})
    updated = custom.replace_namespaced_custom_object(GROUP, "v1alpha2", "default", "tcproutes", "db", edited)
    assert updated["metadata"]["generation"] == 2
    assert updated["status"] == status["status"]
    # A status write with the spec changed leaves the spec alone.
    sneaky = dict(updated, spec=_route("db", 1)["spec"], status={"parents": []})
    after = custom.replace_namespaced_custom_object_status(GROUP, "v1alpha2", "default", "tcproutes", "db", sneaky)
    assert after["spec"] == updated["spec"] and after["status"] == {"parents": []}
    assert after["metadata"]["generation"] == 2
    # The same object is served in every version of its kind.
    v1 = custom.get_namespaced_custom_object(GROUP, "v1", "default", "tcproutes", "db")
    assert v1["apiVersion"] == f"{GROUP}/v1" and v1["metadata"]["uid"] == meta["uid"]


def test_stale_resource_version_is_a_conflict(kubeapi):
    _, url = kubeapi
    leases = client.CoordinationV1Api(api_client(url))
    body = client.V1Lease(metadata=client.V1ObjectMeta(name="lock"), spec=client.V1LeaseSpec(holder_identity="a"))
    created = leases.create_namespaced_lease("default", body)
    created.spec.holder_identity = "b"
    leases.replace_namespaced_lease("lock", "default", created)
    created.spec.holder_identity = "c"  # still carries the old resourceVersion
    with pytest.raises(ApiException) as raised:
        leases.replace_namespaced_lease("lock", "default", created)
    assert raised.value.status == 409
    assert leases.read_namespaced_lease("lock", "default").spec.holder_identity == "b"
    with pytest.raises(ApiException) as exists:
        leases.create_namespaced_lease("default", body)
    assert exists.value.status == 409


def test_label_selectors_filter_endpoint_slices(kubeapi):
    _, url = kubeapi
    discovery = client.DiscoveryV1Api(api_client(url))
    for name, service in (("a-1", "a"), ("b-1", "b"), ("bare", None)):
        labels = {"kubernetes.io/service-name": service} if service else {}
        discovery.create_namespaced_endpoint_slice("default", client.V1EndpointSlice(
            metadata=client.V1ObjectMeta(name=name, labels=labels), address_type="IPv4", endpoints=[]))

    def names(selector: str) -> list[str]:
        listed = discovery.list_endpoint_slice_for_all_namespaces(label_selector=selector)
        return sorted(s.metadata.name for s in listed.items)

    assert names("kubernetes.io/service-name") == ["a-1", "b-1"]
    assert names("kubernetes.io/service-name=a") == ["a-1"]
    assert names("kubernetes.io/service-name!=a") == ["b-1", "bare"]
    assert names("kubernetes.io/service-name in (a, b)") == ["a-1", "b-1"]
    assert names("!kubernetes.io/service-name") == ["bare"]


def test_watch_resumes_from_a_resource_version_and_expires_old_ones():
    from lab.kubeapi import KubeApi

    api = KubeApi(history=5)
    url = api.listen()
    try:
        core = client.CoreV1Api(api_client(url))
        listed = core.list_namespace()
        start = listed.metadata.resource_version
        for i in range(3):
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=f"ns{i}")))
        seen = [e["object"].metadata.name for e in
                watch.Watch().stream(core.list_namespace, resource_version=start, timeout_seconds=1)]
        assert seen == ["ns0", "ns1", "ns2"]
        for i in range(3, 10):
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=f"ns{i}")))
        with pytest.raises(ApiException) as gone:
            list(watch.Watch().stream(core.list_namespace, resource_version=start, timeout_seconds=1))
        assert gone.value.status == 410
    finally:
        api.close()


def test_faults_drop_watches_expire_and_go_down(kubeapi):
    api, url = kubeapi
    core = client.CoreV1Api(api_client(url))
    rv = core.list_namespace().metadata.resource_version
    ended = threading.Event()

    def watch_until_dropped() -> None:
        for _ in watch.Watch().stream(core.list_namespace, resource_version=rv, timeout_seconds=30):
            pass
        ended.set()

    threading.Thread(target=watch_until_dropped, daemon=True).start()
    time.sleep(0.3)
    api.drop_watches()
    assert ended.wait(5), "a dropped watch stream ends"

    api.expire_next_watch()
    with pytest.raises(ApiException) as gone:
        list(watch.Watch().stream(core.list_namespace, resource_version=rv, timeout_seconds=1))
    assert gone.value.status == 410

    api.go_down()
    with pytest.raises(Exception):  # noqa: B017 - urllib3 raises its own connection errors
        client.CoreV1Api(api_client(url)).list_namespace(_request_timeout=2)
    api.come_back()
    assert {n.metadata.name for n in core.list_namespace().items} >= {"default"}


def test_requests_are_recorded_with_verb_and_subresource(kubeapi):
    api, url = kubeapi
    custom = client.CustomObjectsApi(api_client(url))
    custom.create_namespaced_custom_object(GROUP, "v1alpha2", "default", "tcproutes", _route("db"))
    custom.patch_namespaced_custom_object_status(GROUP, "v1alpha2", "default", "tcproutes", "db", {"status": {}})
    custom.list_cluster_custom_object(GROUP, "v1", "tcproutes")
    seen = {(r.verb, r.resource, r.subresource) for r in api.requests_since()}
    assert seen == {("create", "tcproutes", ""), ("patch", "tcproutes", "status"), ("list", "tcproutes", "")}
