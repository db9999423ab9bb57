"""Loading and validating manifests: one clear problem per invalid object, naming the
file, the object and the field; valid upstream manifests load cleanly."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ctl.api import (
    CRDS_ENV_VAR,
    CrdsNotFoundError,
    EndpointSlice,
    Gateway,
    Service,
    TCPRoute,
    UDPRoute,
    ValidationProblem,
)
from ctl.sources import load_directory, parse_documents
from ctl.sources.files import manifest_paths

SHARED = Path(__file__).resolve().parents[3] / "shared" / "gateway-api" / "v1.6.1"
EXAMPLES = sorted((SHARED / "examples" / "standard").rglob("*.yaml"))


def parse(text: str, filename: str = "examples/gw.yaml"):
    return parse_documents(textwrap.dedent(text), filename)


def only_problem(text: str, filename: str = "examples/gw.yaml") -> str:
    result = parse(text, filename)
    assert not result.objects, result.objects
    assert len(result.problems) == 1, result.problems
    return str(result.problems[0])


GATEWAY = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
spec:
  gatewayClassName: xdp-gateway
  listeners:
    - name: tcp
      protocol: {protocol}
      port: {port}
"""


def gateway(protocol: str = "TCP", port: int = 9000, extra: str = "") -> str:
    return GATEWAY.format(protocol=protocol, port=port) + textwrap.indent(extra, "      ")


def tcp_route(backend: str = "{name: app, port: 80}", api_version: str = "v1", rules: int = 1) -> str:
    rule = f"    - backendRefs: [{backend}]\n"
    return (
        f"apiVersion: gateway.networking.k8s.io/{api_version}\nkind: TCPRoute\nmetadata: {{name: r, namespace: apps}}\n"
        "spec:\n  parentRefs: [{name: gw}]\n  rules:\n" + rule * rules
    )


# --- the messages the brief asks for -------------------------------------------------


def test_port_out_of_range() -> None:
    assert only_problem(gateway(port=70000)) == (
        "examples/gw.yaml: Gateway default/gw: spec.listeners[0].port: 70000 is greater than the maximum of 65535"
    )


def test_malformed_listener_protocol() -> None:
    assert only_problem(gateway(protocol='"TCP UDP"')) == (
        "examples/gw.yaml: Gateway default/gw: spec.listeners[0].protocol: 'TCP UDP' does not match "
        "'^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$|[a-z0-9]([-a-z0-9]*[a-z0-9])?"
        "(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\\\\/[A-Za-z0-9]+$'"
    )


def test_well_formed_unknown_protocol_loads() -> None:
    """The API server stores any well-formed protocol; refusing it is the controller's
    job (listener Accepted=False/UnsupportedProtocol), not the loader's."""
    result = parse(gateway(protocol="SCTP"))
    assert not result.problems
    assert isinstance(result.objects[0], Gateway)
    assert result.objects[0].spec.listeners[0].protocol == "SCTP"


def test_weight_above_maximum() -> None:
    assert only_problem(tcp_route("{name: app, port: 80, weight: 1000001}"), "r.yaml") == (
        "r.yaml: TCPRoute apps/r: spec.rules[0].backendRefs[0].weight: 1000001 is greater than the maximum of 1000000"
    )


def test_weight_bounds_accepted() -> None:
    result = parse(tcp_route("{name: a, port: 80, weight: 0}, {name: b, port: 80, weight: 1000000}"))
    assert not result.problems
    assert [ref.weight for ref in result.objects[0].spec.rules[0].backend_refs] == [0, 1_000_000]


def test_wrong_api_version_for_gateway() -> None:
    assert only_problem(gateway().replace("/v1\n", "/v1alpha1\n", 1)) == (
        "examples/gw.yaml: Gateway default/gw: apiVersion: gateway.networking.k8s.io/v1alpha1 is not served "
        "for Gateway (served: v1, v1beta1)"
    )


def test_kind_under_the_wrong_group() -> None:
    assert only_problem(gateway().replace("gateway.networking.k8s.io/v1", "v1", 1)) == (
        "examples/gw.yaml: Gateway default/gw: apiVersion: v1 does not serve Gateway "
        "(use gateway.networking.k8s.io/v1, gateway.networking.k8s.io/v1beta1)"
    )


def test_core_kind_with_unserved_version() -> None:
    text = "apiVersion: v2\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n"
    assert only_problem(text, "s.yaml") == "s.yaml: Service default/s: apiVersion: v2 is not served for Service (served: v1)"


def test_missing_name_names_the_document() -> None:
    text = "---\n" + gateway().replace("  name: gw\n", "  namespace: infra\n", 1)
    text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: infra}\n" + text
    result = parse(text)
    assert [o.name for o in result.objects] == ["infra"]
    assert [str(p) for p in result.problems] == ["examples/gw.yaml: Gateway in document 2: metadata.name: Required value"]


def test_yaml_syntax_error_has_line_number() -> None:
    text = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  labels: {x: y\n---\nfoo: bar\n"
    problem = only_problem(text, "bad.yaml")
    assert problem.startswith("bad.yaml:6: YAML syntax error: "), problem


def test_documents_before_a_syntax_error_are_kept() -> None:
    text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\nkey: [unclosed\n"
    result = parse(text, "bad.yaml")
    assert [o.name for o in result.objects] == ["a"]
    assert result.problems[0].line == 6


def test_tls_on_tcp_listener() -> None:
    extra = "tls:\n  mode: Passthrough\n"
    assert only_problem(gateway(extra=extra)) == (
        "examples/gw.yaml: Gateway default/gw: spec.listeners[0].tls: "
        "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']"
    )


# --- other API server rules ---------------------------------------------------------


def test_hostname_on_udp_listener() -> None:
    assert only_problem(gateway(protocol="UDP", extra="hostname: a.example.com\n")).endswith(
        "spec.listeners[0].hostname: hostname must not be specified for protocols ['TCP', 'UDP']"
    )


def test_listener_names_unique() -> None:
    text = gateway() + "    - {name: tcp, protocol: UDP, port: 9000}\n"
    assert only_problem(text).endswith("spec.listeners[1].name: Listener name must be unique within the Gateway")


def test_several_problems_make_one_message() -> None:
    text = gateway(port=70000) + "    - {name: tcp, protocol: UDP, port: 0}\n"
    problem = only_problem(text)
    assert problem.endswith("spec.listeners[0].port: 70000 is greater than the maximum of 65535 (and 1 more problem)")


def test_invalid_gateway_address() -> None:
    text = gateway().replace("  listeners:", "  addresses: [{value: 10.0.0.300}]\n  listeners:")
    assert only_problem(text).endswith("spec.addresses[0].value: '10.0.0.300' is not a valid ipv4 or ipv6 address")


def test_v1_route_has_exactly_one_rule() -> None:
    assert only_problem(tcp_route(rules=2)).endswith("spec.rules: must have at most 1 items (has 2)")


def test_v1alpha2_route_allows_sixteen_rules() -> None:
    assert isinstance(parse(tcp_route(api_version="v1alpha2", rules=16)).objects[0], TCPRoute)
    assert only_problem(tcp_route(api_version="v1alpha2", rules=17)).endswith(
        "spec.rules: must have at most 16 items (has 17)"
    )


def test_service_backend_needs_port() -> None:
    assert only_problem(tcp_route("{name: app}")).endswith(
        "spec.rules[0].backendRefs[0].port: Must have port for Service reference"
    )


def test_parent_refs_to_one_gateway_need_section_names() -> None:
    text = tcp_route().replace("parentRefs: [{name: gw}]", "parentRefs: [{name: gw}, {name: gw, sectionName: a}]")
    assert only_problem(text).endswith(
        "spec.parentRefs[1]: sectionName must be specified when parentRefs includes 2 or more references to the same parent"
    )


def test_v1alpha2_parent_refs_may_differ_by_port() -> None:
    """v1alpha2 is validated with the experimental channel, whose rule also allows port."""
    text = tcp_route(api_version="v1alpha2").replace(
        "parentRefs: [{name: gw}]", "parentRefs: [{name: gw, port: 1}, {name: gw, port: 2}]"
    )
    assert not parse(text).problems


def test_defaults_are_applied_like_the_api_server() -> None:
    route = parse(tcp_route()).objects[0]
    assert isinstance(route, TCPRoute)
    parent, backend = route.spec.parent_refs[0], route.spec.rules[0].backend_refs[0]
    assert (parent.group, parent.kind) == ("gateway.networking.k8s.io", "Gateway")
    assert (backend.group, backend.kind, backend.weight) == ("", "Service", 1)
    listener = parse(gateway()).objects[0].spec.listeners[0]
    assert listener.allowed_routes.namespaces.from_ == "Same"


def test_unknown_fields_are_refused_and_status_values_ignored() -> None:
    # Strict field validation, as kubectl apply --validate=strict (more in test_strict.py);
    # status is a subresource: its values are not validated on create.
    assert only_problem(gateway() + "      futureField: {x: 1}\n") == (
        "examples/gw.yaml: Gateway default/gw: spec.listeners[0].futureField: unknown field")
    result = parse(gateway() + "status:\n  conditions: nonsense\n")
    assert not result.problems and isinstance(result.objects[0], Gateway)


def test_unwatched_kinds_are_named_not_errors() -> None:
    text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\n"
    result = parse(text)
    assert result.objects == () and result.problems == ()
    assert [i.subject for i in result.ignored] == ["Deployment d", "Gateway g"]


def test_empty_documents_are_skipped() -> None:
    result = parse("---\n---\n# just a comment\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n")
    assert [o.name for o in result.objects] == ["a"] and not result.problems


def test_a_document_that_is_not_an_object() -> None:
    assert only_problem("- a\n- b\n", "l.yaml") == "l.yaml: document 1: expected a Kubernetes object, got a list"


def test_missing_kind() -> None:
    assert only_problem("apiVersion: v1\nmetadata: {name: a}\n", "k.yaml") == "k.yaml: document 1: kind: Required value"


def test_metadata_name_format() -> None:
    text = "apiVersion: v1\nkind: Service\nmetadata: {name: 1st}\nspec: {ports: [{port: 80}]}\n"
    assert "metadata.name: Invalid value '1st': a DNS-1035 label" in only_problem(text)


def test_label_value_format() -> None:
    text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {team: 'not ok'}}\n"
    assert "metadata.labels['team']: Invalid value 'not ok'" in only_problem(text)


# --- core kinds (validated by the models) --------------------------------------------


def service(ports: str) -> str:
    return f"apiVersion: v1\nkind: Service\nmetadata: {{name: s, namespace: apps}}\nspec:\n  ports: {ports}\n"


def test_service_port_range() -> None:
    assert only_problem(service("[{port: 0}]"), "s.yaml") == (
        "s.yaml: Service apps/s: spec.ports[0].port: 0: Input should be greater than or equal to 1"
    )


def test_service_port_protocol() -> None:
    assert only_problem(service("[{port: 80, protocol: ICMP}]"), "s.yaml") == (
        "s.yaml: Service apps/s: spec.ports[0].protocol: 'ICMP': Input should be 'TCP', 'UDP' or 'SCTP'"
    )


def test_service_ports_must_be_named_when_several() -> None:
    assert only_problem(service("[{name: a, port: 80}, {port: 81}]"), "s.yaml").endswith(
        "spec.ports[1].name: Required value (a Service with several ports must name each)"
    )


def test_service_same_port_number_for_two_protocols() -> None:
    result = parse(service("[{name: dns-udp, port: 53, protocol: UDP}, {name: dns-tcp, port: 53}]"))
    assert not result.problems and isinstance(result.objects[0], Service)


def slice_doc(address_type: str, address: str) -> str:
    return (
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
        "metadata: {name: s-1, namespace: apps, labels: {kubernetes.io/service-name: s}}\n"
        f"addressType: {address_type}\nports: [{{port: 8080}}]\nendpoints: [{{addresses: ['{address}']}}]\n"
    )


def test_endpoint_address_must_match_address_type() -> None:
    assert only_problem(slice_doc("IPv4", "fd00::1"), "e.yaml") == (
        "e.yaml: EndpointSlice apps/s-1: endpoints[0].addresses[0]: 'fd00::1' is not an IPv4 address"
    )
    assert only_problem(slice_doc("IPv6", "10.0.0.999"), "e.yaml").endswith("'10.0.0.999' is not a valid IP address")
    assert isinstance(parse(slice_doc("IPv6", "fd00::1")).objects[0], EndpointSlice)


# --- upstream manifests -------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(SHARED)))
def test_upstream_examples_load_cleanly(path: Path) -> None:
    result = parse_documents(path.read_text(), str(path))
    assert result.problems == (), [str(p) for p in result.problems]
    assert result.objects


def test_upstream_conformance_manifests_load_cleanly() -> None:
    result = load_directory(SHARED / "conformance")
    assert result.problems == (), [str(p) for p in result.problems]
    assert len(result.snapshot.gateways) > 10
    assert any(isinstance(r, UDPRoute) for r in result.snapshot.udp_routes)


# --- the directory loader ----------------------------------------------------------


def test_load_directory_reads_yaml_recursively_in_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "ns.yml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: from-yml}\n")
    (tmp_path / "a.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: from-yaml}\n")
    (tmp_path / "notes.txt").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: ignored}\n")
    (tmp_path / "..data").mkdir()  # a ConfigMap volume's hidden copy
    (tmp_path / "..data" / "a.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: from-yaml}\n")
    result = load_directory(tmp_path)
    assert result.problems == ()
    assert [n.name for n in result.snapshot.namespaces] == ["from-yaml", "from-yml"]


def test_manifest_paths_follow_file_links_but_not_directory_links(tmp_path: Path) -> None:
    for name in ("b.yml", "a.yaml", "sub/x.yaml", "sub-1/y.yaml", "sub/deep/z.yml", "sub/.git/h.yaml",
                 ".hidden.yaml", "..2026_11_30/cm.yaml", "notes.txt", "yaml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x: 1\n")
    (tmp_path / "..data").symlink_to("..2026_11_30")  # a ConfigMap volume's layout
    (tmp_path / "cm.yaml").symlink_to("..data/cm.yaml")
    (tmp_path / "linked").symlink_to("sub")  # a directory link is not entered (no cycles)
    (tmp_path / "dir.yaml").symlink_to("sub")  # a directory, whatever its name
    (tmp_path / "dangling.yaml").symlink_to("nowhere")
    found = [path.relative_to(tmp_path).as_posix() for path in manifest_paths(tmp_path)]
    assert found == ["a.yaml", "b.yml", "cm.yaml", "sub-1/y.yaml", "sub/deep/z.yml", "sub/x.yaml"]
    assert manifest_paths(tmp_path / "nope") == []


def test_load_directory_reports_duplicates_and_bad_files(tmp_path: Path) -> None:
    (tmp_path / "1.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n")
    (tmp_path / "2.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n: :\n")
    result = load_directory(tmp_path)
    messages = [str(p) for p in result.problems]
    assert messages[0].startswith(f"{tmp_path / '2.yaml'}:5: YAML syntax error")
    assert messages[1] == f"{tmp_path / '2.yaml'}: Namespace a: defined twice: already in {tmp_path / '1.yaml'}"
    assert len(result.snapshot.namespaces) == 1


def test_load_directory_never_raises_for_a_missing_directory(tmp_path: Path) -> None:
    result = load_directory(tmp_path / "nope")
    assert [str(p) for p in result.problems] == [f"{tmp_path / 'nope'}: not a directory"]


def test_missing_crds_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CRDS_ENV_VAR, str(tmp_path / "crds"))
    with pytest.raises(CrdsNotFoundError, match=str(tmp_path / "crds" / "standard")):
        parse(gateway())


def test_problem_rendering() -> None:
    problem = ValidationProblem("f.yaml", "Gateway a/b", "bad", field="spec.x", line=3)
    assert str(problem) == "f.yaml:3: Gateway a/b: spec.x: bad"


def test_secrets_load_from_the_config_directory(tmp_path: Path) -> None:
    """Standalone mode reads TLS Secrets like any other object: base64 ``data`` and
    ``stringData`` (which wins, as the API server merges it over data)."""
    (tmp_path / "tls.yaml").write_text(textwrap.dedent("""\
        apiVersion: v1
        kind: Secret
        metadata: {name: site-cert, namespace: web}
        type: kubernetes.io/tls
        data: {tls.crt: Y2VydA==, tls.key: a2V5}
        stringData: {tls.key: from-string-data}
        """))
    result = load_directory(tmp_path)
    assert result.problems == ()
    [secret] = result.snapshot.secrets
    assert (secret.namespace, secret.name, secret.type) == ("web", "site-cert", "kubernetes.io/tls")
    assert secret.value("tls.crt") == b"cert"
    assert secret.value("tls.key") == b"from-string-data"
    assert secret.value("ca.crt") is None


def test_secret_data_must_be_base64() -> None:
    message = only_problem("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {tls.crt: 'not base64!'}\n")
    assert "data" in message and "base64" in message


def test_secret_unknown_field_is_refused() -> None:
    message = only_problem("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringdata: {a: b}\n")
    assert "stringdata" in message and "unknown field" in message


def test_models_naming_the_same_fields_share_one_fields_set_and_copies_stay_apart():
    text = "".join(f"""\
---
apiVersion: v1
kind: Service
metadata: {{name: svc-{i}, namespace: default}}
spec:
  ports:
  - {{name: tcp, port: {8080 + i}, protocol: TCP}}
""" for i in range(2))
    first, second = parse(text).objects
    assert first.model_fields_set == second.model_fields_set == {"api_version", "kind", "metadata", "spec"}
    assert first.__pydantic_fields_set__ is second.__pydantic_fields_set__  # one set, not one per object
    assert first.spec.ports[0].model_fields_set == {"name", "port", "protocol"}
    edited = first.model_copy(update={"kind": "Service"})
    assert edited.model_fields_set == {"api_version", "kind", "metadata", "spec"}
    assert first.model_fields_set == second.model_fields_set == {"api_version", "kind", "metadata", "spec"}


@pytest.mark.parametrize("text", ["10.0.0.1", "0.0.0.0", "255.255.255.255", "fd00::1", "::ffff:1.2.3.4", "01.2.3.4",
                                  "1.2.3.04", "256.1.1.1", "1.2.3", "1.2.3.4 ", " 1.2.3.4", "1.2.3.4\x00", "0x1.2.3.4",
                                  "1..2.3", "\uff11.2.3.4", "", "x", "1.2.3.4/32"])
def test_endpoint_addresses_parse_exactly_as_ipaddress_does(text: str) -> None:
    from ipaddress import ip_address

    from ctl.api.core import parse_ip_address

    try:
        expected: object = ip_address(text)
    except ValueError as error:
        expected = str(error)
    try:
        got: object = parse_ip_address(text)
    except ValueError as error:
        got = str(error)
    assert got == expected and type(got) is type(expected)


SHARING = """\
apiVersion: v1
kind: Service
metadata: {name: a}
spec:
  ports: [{name: tcp, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: b}
spec:
  ports: [{name: tcp, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: c}
spec:
  ports: [{name: tcp, port: 9090}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: a-1
  labels: {kubernetes.io/service-name: a}
addressType: IPv4
ports: [{name: tcp, port: 8080}]
endpoints:
- addresses: [10.0.0.1]
  conditions: {ready: true}
- addresses: [10.0.0.2]
  conditions: {ready: true}
- addresses: [10.0.0.3]
  conditions: {ready: false}
"""


def test_equal_parts_of_parsed_objects_are_one_instance_and_the_rest_stay_apart() -> None:
    a, b, c, endpoints = parse(SHARING).objects
    assert a.spec is b.spec and a.spec.ports[0] is b.spec.ports[0]
    assert c.spec is not a.spec and c.spec.ports[0].port == 9090 and a.spec.ports[0].port == 8080
    first, second, third = endpoints.endpoints
    assert first.conditions is second.conditions and third.conditions is not first.conditions
    assert third.conditions.ready is False
    assert a.metadata.labels == {} and a.metadata.labels is b.metadata.annotations
    assert endpoints.metadata.labels == {"kubernetes.io/service-name": "a"}
    # Parsed again (an edited file): the parts of the objects still held are reused.
    assert parse(SHARING).objects[0].spec is a.spec


def test_shared_parts_go_with_their_last_user() -> None:
    import gc
    import weakref

    objects = parse(SHARING.replace("8080", "8181")).objects
    part = weakref.ref(objects[0].spec)
    del objects
    gc.collect()
    assert part() is None


BAD_SECOND_PORT = """\
apiVersion: v1
kind: Service
metadata: {name: first}
spec:
  ports: [{name: tcp, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: second}
spec:
  ports: [{name: tcp, port: 8080}, {name: tcp, port: 0}]
"""


def test_a_problem_beside_an_already_validated_part_names_its_own_object_and_field() -> None:
    # The second Service repeats the first one's port (validated once, by its input)
    # and adds a bad one: the problem is the second Service's, at its own path.
    result = parse(BAD_SECOND_PORT)
    assert [o.name for o in result.objects] == ["first"]
    (problem,) = result.problems
    assert (problem.subject, problem.field) == ("Service default/second", "spec.ports[1].port")
    assert problem.file == "examples/gw.yaml" and "greater than or equal to 1" in problem.message


def test_an_invalid_part_is_reported_in_every_file_that_holds_it() -> None:
    # Only parts that validated are remembered: the same bad port in two files (and
    # twice in one) is found each time, named with each file and object.
    bad = BAD_SECOND_PORT.replace("name: first", "name: third").replace(
        "[{name: tcp, port: 8080}]", "[{name: tcp, port: 8080}, {name: tcp, port: 0}]")
    first, second = parse(bad, "a.yaml"), parse(bad, "b.yaml")
    for result, filename in ((first, "a.yaml"), (second, "b.yaml")):
        assert not result.objects
        assert [(p.file, p.subject, p.field) for p in result.problems] == [
            (filename, "Service default/third", "spec.ports[1].port"),
            (filename, "Service default/second", "spec.ports[1].port")]


def test_inputs_equal_in_python_but_of_other_types_are_validated_apart() -> None:
    # 1 == True and 8080 == 8080.0 in Python: each input gets its own validation, so
    # each answer is what validating it alone gives.
    from pydantic import ValidationError

    from ctl.api import ServicePort
    from ctl.api.base import _BY_INPUT

    def outcome(data: dict) -> object:
        try:
            return ServicePort.model_validate(data)
        except ValidationError as error:
            return [(e["loc"], e["type"]) for e in error.errors()]

    inputs = [{"port": 1}, {"port": True}, {"port": 1.0}, {"port": "1"}, {"name": 1, "port": 1}]
    alone = []
    for data in inputs:
        _BY_INPUT.clear()
        alone.append(outcome(data))
    _BY_INPUT.clear()
    assert [outcome(data) for data in inputs] == alone
    assert [outcome(data) for data in inputs] == alone  # and again, from the memo


def test_constructed_parts_are_their_own_instances() -> None:
    import warnings

    from ctl.api import ServicePort

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydantic warns when a constructor's result is replaced
        one, two = ServicePort(name="tcp", port=80), ServicePort(name="tcp", port=80)
    assert one == two and one is not two


def test_slice_endpoints_are_frozen_and_have_no_instance_dict() -> None:
    import dataclasses

    endpoint = parse(SHARING).objects[3].endpoints[0]
    assert not hasattr(endpoint, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        endpoint.addresses = ("10.0.0.9",)  # type: ignore[misc]
    assert parse(SHARING).objects[3] == parse(SHARING).objects[3]
