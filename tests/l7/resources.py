"""Envoy resources built by hand, for testing the ADS server and Envoy before (and
independently of) the Gateway API rendering."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2

from l7sidecar.xds import CLUSTER, ENDPOINT, LISTENER, ROUTE, Snapshot


def _any(message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(ads=config_source_pb2.AggregatedConfigSource(),
                                          resource_api_version=config_source_pb2.V3)


def cluster(name: str) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(
        name=name, type=cluster_pb2.Cluster.EDS, connect_timeout=duration_pb2.Duration(seconds=1),
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=_ads()))


def endpoints(name: str, *addresses: tuple[str, int]) -> endpoint_pb2.ClusterLoadAssignment:
    return endpoint_pb2.ClusterLoadAssignment(cluster_name=name, endpoints=[
        endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[
            endpoint_components_pb2.LbEndpoint(endpoint=endpoint_components_pb2.Endpoint(
                address=address_pb2.Address(socket_address=address_pb2.SocketAddress(
                    address=host, port_value=port)))) for host, port in addresses])])


def http_listener(name: str, address: str, port: int, route_config: str) -> listener_pb2.Listener:
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=name, rds=hcm_pb2.Rds(config_source=_ads(), route_config_name=route_config),
        use_remote_address=wrappers_pb2.BoolValue(value=True),
        http_filters=[hcm_pb2.HttpFilter(name="envoy.filters.http.router", typed_config=_any(router_pb2.Router()))])
    return listener_pb2.Listener(
        name=name, freebind=wrappers_pb2.BoolValue(value=True),
        address=address_pb2.Address(socket_address=address_pb2.SocketAddress(address=address, port_value=port)),
        filter_chains=[listener_components_pb2.FilterChain(filters=[listener_components_pb2.Filter(
            name="envoy.filters.network.http_connection_manager", typed_config=_any(manager))])])


def route_config(name: str, routes: list[tuple[str, str]],
                 response_headers: dict[str, str] | None = None) -> route_pb2.RouteConfiguration:
    """routes: (path prefix, cluster); response_headers are added to every answer."""
    return route_pb2.RouteConfiguration(name=name, virtual_hosts=[route_components_pb2.VirtualHost(
        name="all", domains=["*"],
        response_headers_to_add=[base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=k, value=v))
                                 for k, v in (response_headers or {}).items()],
        routes=[route_components_pb2.Route(
            match=route_components_pb2.RouteMatch(prefix=prefix),
            route=route_components_pb2.RouteAction(cluster=target)) for prefix, target in routes])])


def snapshot(*resources) -> Snapshot:
    by_type: dict[str, dict] = {}
    kinds = {cluster_pb2.Cluster: (CLUSTER, "name"), endpoint_pb2.ClusterLoadAssignment: (ENDPOINT, "cluster_name"),
             listener_pb2.Listener: (LISTENER, "name"), route_pb2.RouteConfiguration: (ROUTE, "name")}
    for resource in resources:
        type_url, key = kinds[type(resource)]
        by_type.setdefault(type_url, {})[getattr(resource, key)] = resource
    return Snapshot(by_type)
