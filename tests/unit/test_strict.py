"""Validation as strict as `kubectl apply --validate=strict`: unknown and duplicate
fields, the API server's metadata rules, kinds we do not read, files that are not YAML
text, Lists. Each message names the file, the object and the field."""

from __future__ import annotations

import codecs
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ctl.api import Gateway, Namespace, Service, TCPRoute
from ctl.api import strict
from ctl.api.parse import _CORE_CLIENT_MODELS, ANNOTATIONS_MAX_BYTES
from ctl.api.strict import unknown_fields
from ctl import cli
from ctl.cli import app
from ctl.sources import load_directory, parse_documents

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "standalone"


def parse(text: str, filename: str = "m.yaml"):
    return parse_documents(textwrap.dedent(text), filename)


def only_problem(text: str, filename: str = "m.yaml") -> str:
    result = parse(text, filename)
    assert not result.objects, result.objects
    assert len(result.problems) == 1, result.problems
    return str(result.problems[0])


def loads(text: str):
    result = parse(text)
    assert result.problems == () and result.ignored == (), (result.problems, result.ignored)
    assert len(result.objects) == 1
    return result.objects[0]


ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: r, namespace: apps}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: app, port: 80, weight: 3}]
"""

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: app, namespace: apps}
spec:
  ports: [{name: tcp, port: 80, protocol: TCP}]
"""

SLICE = """\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: app-1, namespace: apps, labels: {kubernetes.io/service-name: app}}
addressType: IPv4
ports: [{name: tcp, port: 80, protocol: TCP}]
endpoints:
- addresses: [10.0.0.1]
  conditions: {ready: true}
"""


# -- unknown fields --------------------------------------------------------------------


@pytest.mark.parametrize(("text", "subject", "field"), [
    pytest.param(ROUTE.replace("spec:\n", "spec:\n  bogus: 1\n"), "TCPRoute apps/r", "spec.bogus", id="route-spec"),
    pytest.param(ROUTE.replace("weight: 3", "weigth: 3"), "TCPRoute apps/r", "spec.rules[0].backendRefs[0].weigth",
                 id="route-misspelt-weight"),
    pytest.param(ROUTE + "extra: true\n", "TCPRoute apps/r", "extra", id="route-top-level"),
    pytest.param(ROUTE.replace("namespace: apps}", "namespace: apps, lables: {a: b}}"), "TCPRoute apps/r",
                 "metadata.lables", id="route-metadata"),
    pytest.param(ROUTE + "status:\n  parents: []\n  bogus: 1\n", "TCPRoute apps/r", "status.bogus", id="route-status"),
    pytest.param(SERVICE.replace("ports:", "portz:"), "Service apps/app", "spec.portz", id="service-spec"),
    pytest.param(SERVICE.replace("protocol: TCP", "protocol: TCP, nodeport: 30080"), "Service apps/app",
                 "spec.ports[0].nodeport", id="service-port-casing"),
    pytest.param(SERVICE.replace("metadata: {", "metadata: {uid2: x, "), "Service apps/app", "metadata.uid2",
                 id="service-metadata"),
    pytest.param(SLICE.replace("{ready: true}", "{redy: true}"), "EndpointSlice apps/app-1",
                 "endpoints[0].conditions.redy", id="slice-conditions"),
    pytest.param(SLICE.replace("addressType:", "addresstype: IPv4\naddressType:"), "EndpointSlice apps/app-1",
                 "addresstype", id="slice-top-level"),
    pytest.param("apiVersion: v1\nkind: Namespace\nmetadata: {name: apps}\nspec: {finalisers: []}\n",
                 "Namespace apps", "spec.finalisers", id="namespace"),
    pytest.param(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n"
        "  gatewayClassName: c\n  listeners: [{name: l, port: 80, protocol: TCP, allowedRoutes: {namespace: {from: All}}}]\n",
        "Gateway default/gw", "spec.listeners[0].allowedRoutes.namespace", id="gateway-listener"),
])
def test_unknown_field_is_an_error_naming_its_path(text: str, subject: str, field: str) -> None:
    assert only_problem(text) == f"m.yaml: {subject}: {field}: unknown field"


def test_several_unknown_fields_name_the_first_and_count_the_rest() -> None:
    text = ROUTE.replace("spec:\n", "spec:\n  a: 1\n  b: 2\n")
    assert only_problem(text) == "m.yaml: TCPRoute apps/r: spec.a: unknown field (and 1 more problem)"


def test_every_field_of_the_core_kinds_is_known() -> None:
    """Manifests as `kubectl get -o yaml` writes them, every field set, load cleanly."""
    service = loads("""\
        apiVersion: v1
        kind: Service
        metadata:
          name: app
          namespace: apps
          uid: 5b1c2f7e-0000-4000-8000-000000000001
          resourceVersion: "123"
          generation: 1
          creationTimestamp: "2025-01-01T00:00:00Z"
          annotations: {example.com/owner: team-a}
          ownerReferences: [{apiVersion: v1, kind: Namespace, name: apps, uid: x, controller: true}]
          managedFields:
          - {manager: kubectl, operation: Apply, apiVersion: v1, fieldsType: FieldsV1, fieldsV1: {"f:spec": {}}}
          finalizers: [example.com/keep]
        spec:
          type: ClusterIP
          clusterIP: 10.96.0.10
          clusterIPs: [10.96.0.10, fd00::10]
          ipFamilies: [IPv4, IPv6]
          ipFamilyPolicy: PreferDualStack
          selector: {app: app}
          sessionAffinity: ClientIP
          sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
          internalTrafficPolicy: Cluster
          ports: [{name: tcp, port: 80, targetPort: http, protocol: TCP, appProtocol: kubernetes.io/h2c}]
        status:
          loadBalancer: {ingress: [{ip: 192.0.2.1, ipMode: VIP}]}
        """)
    assert isinstance(service, Service)
    endpoint_slice = loads(SLICE.replace("  conditions: {ready: true}\n", (
        "  conditions: {ready: true, serving: true, terminating: false}\n"
        "  hostname: pod-1\n"
        "  nodeName: node-1\n"
        "  zone: z1\n"
        "  hints: {forZones: [{name: z1}]}\n"
        "  targetRef: {kind: Pod, name: pod-1, namespace: apps, uid: y}\n")))
    assert endpoint_slice.endpoints[0].addresses == ("10.0.0.1",)


def test_preserve_unknown_fields_keeps_whatever_the_node_holds() -> None:
    schema = {"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "known": {"type": "string"},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "mixed": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                      "properties": {"inner": {"type": "object", "properties": {"x": {}}}}},
            "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {}}}},
            "list": {"type": "array", "items": {"type": "object", "properties": {"v": {}}}},
            "opaque": {"type": "object"},
        }},
    }}
    value = {"spec": {
        "known": "a", "free": {"anything": {"deep": 1}}, "mixed": {"other": 1, "inner": {"x": 1, "y": 2}},
        "map": {"k": {"v": 1, "w": 2}}, "list": [{"v": 1}, {"u": 1}], "opaque": {"z": 1}, "nope": 1,
    }}
    assert unknown_fields(schema, value) == [
        ("spec.mixed.inner.y", "unknown field"),
        ("spec.map.k.w", "unknown field"),
        ("spec.list[1].u", "unknown field"),
        ("spec.nope", "unknown field"),
    ]


# -- duplicate fields ----------------------------------------------------------------------


def test_a_field_set_twice_is_an_error_naming_both_lines() -> None:
    text = ROUTE.replace("weight: 3}", "weight: 3}]\n    backendRefs: [{name: other, port: 80}")
    assert only_problem(text) == (
        "m.yaml: TCPRoute apps/r: spec.rules[0].backendRefs: duplicate field (line 8; first set on line 7)"
    )


def test_a_yaml_merge_key_is_not_a_duplicate() -> None:
    text = ("apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: &m {name: a, labels: {x: y}}}\n"
            "- apiVersion: v1\n  kind: Namespace\n  metadata:\n    <<: *m\n    name: b\n")
    result = parse(text)
    assert result.problems == ()
    assert [(n.name, n.metadata.labels) for n in result.objects] == [("a", {"x": "y"}), ("b", {"x": "y"})]


# -- metadata --------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "field", "fragment"), [
    pytest.param(ROUTE.replace("name: r,", "name: My_Route,"), "metadata.name", "RFC 1123 subdomain", id="route-name"),
    pytest.param(ROUTE.replace("name: r,", f"name: {'a' * 254},"), "metadata.name", "no more than 253", id="route-name-long"),
    pytest.param(ROUTE.replace("namespace: apps", "namespace: Apps"), "metadata.namespace", "RFC 1123 label",
                 id="route-namespace"),
    pytest.param(ROUTE.replace("namespace: apps", "namespace: a.b"), "metadata.namespace", "RFC 1123 label",
                 id="namespace-with-dot"),
    pytest.param(SERVICE.replace("name: app,", "name: a.b,"), "metadata.name", "DNS-1035 label", id="service-dot"),
    pytest.param(SLICE.replace("name: app-1,", "name: app_1,"), "metadata.name", "RFC 1123 subdomain", id="slice-name"),
    pytest.param("apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: -x}\n"
                 "spec: {controllerName: example.com/c}\n", "metadata.name", "RFC 1123 subdomain", id="class-name"),
    pytest.param(ROUTE.replace("namespace: apps}", "namespace: apps, labels: {team: " + "x" * 64 + "}}"),
                 "metadata.labels['team']", "at most 63", id="label-value-too-long"),
    pytest.param(ROUTE.replace("namespace: apps}", "namespace: apps, labels: {'-bad': x}}"),
                 "metadata.labels['-bad']", "Invalid label key", id="label-key"),
    pytest.param(ROUTE.replace("namespace: apps}", "namespace: apps, annotations: {'a b': x}}"),
                 "metadata.annotations['a b']", "Invalid annotation key", id="annotation-key"),
    pytest.param(ROUTE.replace("namespace: apps}", "namespace: apps, annotations: {replicas: 3}}"),
                 "metadata.annotations['replicas']", "must be strings", id="annotation-value-type"),
    pytest.param(ROUTE.replace("name: r,", "generateName: r-,"), "metadata.name", "generateName is not supported",
                 id="generate-name"),
])
def test_metadata_rules_of_the_api_server(text: str, field: str, fragment: str) -> None:
    message = only_problem(text)
    assert message.startswith("m.yaml: TCPRoute") or message.startswith("m.yaml: Service") \
        or message.startswith("m.yaml: EndpointSlice") or message.startswith("m.yaml: GatewayClass")
    assert f": {field}: " in message and fragment in message, message


def test_annotations_are_limited_in_total_size() -> None:
    big = "x" * (ANNOTATIONS_MAX_BYTES // 2)
    text = ROUTE.replace("namespace: apps}", f"namespace: apps, annotations: {{a: {big}, b: {big}}}}}")
    assert only_problem(text) == (
        f"m.yaml: TCPRoute apps/r: metadata.annotations: Too long: must have at most {ANNOTATIONS_MAX_BYTES} bytes "
        f"(has {ANNOTATIONS_MAX_BYTES + 2})"
    )


def test_dotted_names_are_fine_where_a_subdomain_is_asked() -> None:
    assert loads(ROUTE.replace("name: r,", "name: r.v2,")).name == "r.v2"


def test_missing_api_version() -> None:
    assert only_problem("kind: Service\nmetadata: {name: a}\n") == "m.yaml: document 1: apiVersion: Required value"


# -- kinds we do not read ------------------------------------------------------------------


def test_a_kind_we_do_not_read_is_named_not_dropped() -> None:
    text = """\
        apiVersion: example.com/v1
        kind: Widget
        metadata: {name: w, namespace: apps}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: d}
        ---
        apiVersion: gateway.networking.k8s.io/v1
        kind: BackendTLSPolicy
        metadata: {name: p}
        ---
        apiVersion: example.com/v1
        kind: Gadget
        """
    result = parse(text)
    assert result.objects == () and result.problems == ()
    assert [str(i) for i in result.ignored] == [
        "m.yaml: Widget apps/w: example.com/v1 Widget is not a kind xdp-gateway reads; ignored",
        "m.yaml: Deployment d: apps/v1 Deployment is not a kind xdp-gateway reads; ignored",
        "m.yaml: BackendTLSPolicy p: gateway.networking.k8s.io/v1 BackendTLSPolicy is not a kind xdp-gateway reads; ignored",
        "m.yaml: Gadget document 4: example.com/v1 Gadget is not a kind xdp-gateway reads; ignored",
    ]


def test_ignored_objects_reach_the_load_result(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(SERVICE)
    (tmp_path / "b.yaml").write_text("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n")
    result = load_directory(tmp_path)
    assert result.problems == () and len(result.snapshot.services) == 1
    assert [str(i) for i in result.ignored] == [
        f"{tmp_path / 'b.yaml'}: Widget w: example.com/v1 Widget is not a kind xdp-gateway reads; ignored"]


# -- files that are not YAML text ------------------------------------------------------------


@pytest.mark.parametrize(("content", "expected"), [
    pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ":3: not YAML text: a binary file (NUL byte at offset 8)", id="png"),
    pytest.param(SERVICE.encode() + b"\x00\x01\x02", f":6: not YAML text: a binary file (NUL byte at offset {len(SERVICE)})",
                 id="nul-after-text"),
    pytest.param(b"apiVersion: v1\nkind: \xff\xfe\n", ":2: not YAML text: invalid UTF-8 (byte 0xff at offset 21)",
                 id="invalid-utf8"),
    pytest.param(b"apiVersion: v1\nkind: Namespace\x07\n", ":2: not YAML text: character #x0007 (control characters are not allowed)",
                 id="control-character"),
    pytest.param(bytes(range(128, 256)) * 4, ":1: not YAML text: invalid UTF-8 (byte 0x80 at offset 0)", id="random-bytes"),
])
def test_a_file_that_is_not_yaml_text_is_an_error_naming_the_file(tmp_path: Path, content: bytes,
                                                                  expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    result = load_directory(tmp_path)
    assert [str(p) for p in result.problems] == [f"{path}{expected}"]


def test_byte_order_marks_are_read_like_kubectl(tmp_path: Path) -> None:
    (tmp_path / "utf8.yaml").write_bytes(codecs.BOM_UTF8 + b"apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n")
    (tmp_path / "utf16.yaml").write_bytes("apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n".encode("utf-16"))
    result = load_directory(tmp_path)
    assert result.problems == ()
    assert [n.name for n in result.snapshot.namespaces] == ["a", "b"]


# -- Lists -------------------------------------------------------------------------------------


def test_a_v1_list_is_read_item_by_item() -> None:
    text = "apiVersion: v1\nkind: List\nitems:\n" + textwrap.indent(SERVICE, "  ").replace("  apiVersion", "- apiVersion", 1) \
        + textwrap.indent(SLICE, "  ").replace("  apiVersion", "- apiVersion", 1)
    result = parse(text)
    assert result.problems == ()
    assert [o.ref for o in result.objects] == [
        Service.model_validate({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "app", "namespace": "apps"}}).ref,
        result.objects[1].ref]
    assert str(result.objects[1].ref) == "EndpointSlice apps/app-1"


def test_a_bad_item_of_a_list_is_named_by_its_position() -> None:
    text = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n- {apiVersion: v1}\n"
    assert [str(p) for p in parse(text).problems] == ["m.yaml: document 1, items[1]: kind: Required value"]
    assert [o.name for o in parse(text).objects] == ["a"]


def test_a_typed_list_with_unknown_fields_in_an_item() -> None:
    text = ("apiVersion: v1\nkind: NamespaceList\nmetadata: {resourceVersion: '1'}\nitems:\n"
            "- {apiVersion: v1, kind: Namespace, metadata: {name: a}, spce: {}}\n")
    assert only_problem(text) == "m.yaml: Namespace a: spce: unknown field"


def test_list_items_must_be_a_list() -> None:
    assert only_problem("apiVersion: v1\nkind: List\nitems: {a: 1}\n") == "m.yaml: List in document 1: items: expected a list"


def test_an_empty_list_is_nothing() -> None:
    assert parse("apiVersion: v1\nkind: List\nitems: []\n") == parse("")


# -- gwctl validate ----------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps at the console's width; one message per line is what is checked here."""
    for console in (cli.out, cli.err):
        monkeypatch.setattr(console, "_width", 250)


def test_gwctl_validate_warns_about_unread_kinds_and_exits_0(tmp_path: Path) -> None:
    for source in EXAMPLES.glob("*.yaml"):
        (tmp_path / source.name).write_text(source.read_text())
    (tmp_path / "widget.yaml").write_text("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n")
    result = runner.invoke(app, ["validate", str(tmp_path), "--snat-address", "10.99.10.1"], prog_name="gwctl")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.strip() == (
        f"WARNING: {tmp_path / 'widget.yaml'}: Widget w: example.com/v1 Widget is not a kind xdp-gateway reads; ignored")
    assert "10.99.100.1:80/TCP" in result.stdout


@pytest.mark.parametrize("content", [b"\x00\x01binary", b"caf\xe9: 1\n", ROUTE.replace("spec:\n", "spec:\n  bogus: 1\n").encode()])
def test_gwctl_validate_reports_bad_files_without_a_traceback(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(content)
    result = runner.invoke(app, ["validate", str(bad)], prog_name="gwctl")
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.startswith(f"invalid: {bad}")
    assert "Traceback" not in result.stderr


def test_models_still_hold_what_they_read() -> None:
    # Strictness is a check on the input; the typed models are unchanged.
    route = loads(ROUTE)
    assert isinstance(route, TCPRoute) and route.spec.rules[0].backend_refs[0].weight == 3
    assert isinstance(loads("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n"), Namespace)
    assert not isinstance(route, Gateway)


def test_a_secret_with_data_validates() -> None:
    # V1Secret's data is dict(str, bytearray) in the client's models: a scalar on the wire.
    from ctl.api import Secret, parse_object

    parsed = parse_object({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cert", "namespace": "default"},
                           "type": "kubernetes.io/tls", "data": {"tls.crt": "Y2VydA=="}}, filename="f", index=1)
    assert isinstance(parsed, Secret) and parsed.value("tls.crt") == b"cert"


# -- aliases -------------------------------------------------------------------------------------


def test_a_recursive_alias_is_refused_not_a_crash() -> None:
    assert only_problem("apiVersion: v1\nkind: Namespace\nmetadata: &m {name: a, x: *m}\n") == (
        "m.yaml:1: document 1: an alias refers to a node that contains it (a recursive document)")


def test_excessive_aliasing_is_refused_before_anything_walks_it() -> None:
    # "Billion laughs": nine levels of ten aliases each stand for 10^9 nodes.
    text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{new}: &{new} [{', '.join(['*' + old] * 10)}]\n" for old, new in zip("abcdefgh", "bcdefghi"))
    message = only_problem(text)
    assert message.startswith("m.yaml:1: document 1: excessive aliasing: ") and "at most 1000000" in message


def test_ordinary_aliases_are_fine() -> None:
    text = ("apiVersion: v1\nkind: Service\nmetadata: {name: app, namespace: apps, labels: &l {app: a}}\n"
            "spec:\n  selector: *l\n  ports: [{name: tcp, port: 80}]\n")
    assert loads(text).metadata.labels == {"app": "a"}


def test_objects_an_api_server_accepted_may_carry_fields_newer_than_our_schemas() -> None:
    from ctl.api import parse_object

    newer = {"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "TCPRoute",
             "metadata": {"name": "r", "namespace": "apps", "uid": "u"},
             "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "app", "port": 80}],
                                                                  "fieldFromV17": True}]}}
    assert isinstance(parse_object(newer, filename="f", index=1, unknown_fields=False), TCPRoute)
    refused = parse_object(newer, filename="f", index=1)
    assert str(refused) == "f: TCPRoute apps/r: spec.rules[0].fieldFromV17: unknown field"


# -- the one-walk reading of plain documents ---------------------------------------------------


REPO = Path(__file__).resolve().parents[2]
SHARED_EXAMPLES = REPO.parent.parent / "shared" / "gateway-api"
TRICKY_DOCUMENTS = [
    ROUTE,
    ROUTE.replace("weight: 3}", "weight: 3}]\n    backendRefs: [{name: other, port: 80}"),  # duplicate field
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {x: y, x: z}}\n",
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {'1': y, 1: z}}\n",  # same text, other types
    "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec:\n  ports: [{port: 0x50, name: !!str 8}]\n",
    "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec:\n  ports: [{port: !!int '80'}]\n",
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: yes, labels: {a: ~, b: null, c: 1.5e3, d: .inf, e: 1_0}}\n",
    "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  creationTimestamp: 2024-01-02T03:04:05Z\n",
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, creationTimestamp: !!timestamp 2024-01-02}\n",
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: !!set {x, y}}\n",
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: !custom {x: y}}\n",
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {[x]: y}}\n",
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: !!str {a: b}}\n",
    "apiVersion: v1\nkind: Service\nmetadata: {name: app, namespace: apps, labels: &l {app: a}}\n"
    "spec:\n  selector: *l\n  ports: [{name: tcp, port: 80}]\n",
    "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: &m {name: a, labels: {x: y}}}\n"
    "- apiVersion: v1\n  kind: Namespace\n  metadata:\n    <<: *m\n    name: b\n",
    "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: a, name: b}}\n",
    "~\n---\n42\n---\n[a, b]\n---\n---\nkind: Namespace\n",
    "apiVersion: v1\nkind: Namespace\nmetadata: &m {name: a, x: *m}\n",
    "[" * 2000 + "]" * 2000 + "\n",
]


def _corpus() -> list[tuple[str, str]]:
    texts = [(f"tricky-{i}.yaml", text) for i, text in enumerate(TRICKY_DOCUMENTS)]
    for root in (REPO / "examples", REPO / "tests", REPO / "deploy", SHARED_EXAMPLES):
        texts += [(str(path), path.read_text(errors="replace")) for path in sorted(root.rglob("*.yaml"))]
    return texts


def test_plain_documents_read_in_one_walk_give_what_the_general_path_gives(monkeypatch) -> None:
    """Every manifest in the repository and the upstream examples, and documents chosen
    to leave the one-walk path (aliases, merge keys, tags, odd keys), parse to the same
    objects and problems whether or not plain documents take that path."""
    from ctl.sources import documents

    corpus = _corpus()
    assert len(corpus) > 300
    one_walk = documents._plain_document
    outcomes = []

    def counted(loader, node, may_alias=True):
        result = one_walk(loader, node, may_alias)
        outcomes.append(result is not None)
        return result

    monkeypatch.setattr(documents, "_plain_document", counted)
    fast = [parse_documents(text, name) for name, text in corpus]
    assert outcomes.count(True) > 1000 and outcomes.count(False) >= 8  # both paths were taken
    # Texts without & or * skip looking for aliases: the same as looking.
    monkeypatch.setattr(documents, "_plain_document", lambda loader, node, may_alias: one_walk(loader, node, True))
    assert [parse_documents(text, name) for name, text in corpus] == fast
    monkeypatch.setattr(documents, "_plain_document", lambda loader, node, may_alias: None)
    general = [parse_documents(text, name) for name, text in corpus]
    assert fast == general


def test_the_core_schemas_the_package_carries_are_the_clients() -> None:
    # The agent reads metadata's and the core kinds' schemas from the package instead
    # of importing the Kubernetes client at every start; an upgrade of the client must
    # regenerate them (python scripts/gen_core_fields.py).
    assert strict.CORE_FIELDS.read_text(encoding="utf-8") == strict.core_fields_text(), (
        "ctl/api/core-fields.json is stale: run python scripts/gen_core_fields.py")
    assert set(_CORE_CLIENT_MODELS.values()) <= set(strict.CORE_MODELS)


def test_loading_manifests_does_not_import_the_kubernetes_client(tmp_path: Path) -> None:
    (tmp_path / "svc.yaml").write_text(textwrap.dedent("""\
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: default}
        spec:
          ports: [{port: 80}]
        """))
    code = ("import sys, ctl.sources; loaded = ctl.sources.load_directory(sys.argv[1]); "
            "assert not loaded.problems, loaded.problems; assert loaded.snapshot.services; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'kubernetes'))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
