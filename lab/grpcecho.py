"""The conformance suite's gRPC echo service, gateway_api_conformance.echo_basic.grpcecho.
GrpcEcho with Echo, EchoTwo and EchoThree, its messages built from descriptors here (no
generated code): the reply names the called method, the pod and namespace that answered
and the metadata it saw. Used by lab.echo (server) and lab.grpcclient (client)."""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "gateway_api_conformance.echo_basic.grpcecho"
SERVICE = f"{PACKAGE}.GrpcEcho"
METHODS = ("Echo", "EchoTwo", "EchoThree")


def _file() -> descriptor_pb2.FileDescriptorProto:
    string = descriptor_pb2.FieldDescriptorProto.TYPE_STRING
    message = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
    optional = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    repeated = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    proto = descriptor_pb2.FileDescriptorProto(name="lab/grpcecho.proto", package=PACKAGE, syntax="proto3")
    proto.message_type.add(name="EchoRequest")
    context = proto.message_type.add(name="Context")
    context.field.add(name="namespace", number=1, type=string, label=optional)
    context.field.add(name="pod", number=2, type=string, label=optional)
    header = proto.message_type.add(name="Header")
    header.field.add(name="key", number=1, type=string, label=optional)
    header.field.add(name="value", number=2, type=string, label=optional)
    response = proto.message_type.add(name="EchoResponse")
    response.field.add(name="fully_qualified_method", number=1, type=string, label=optional)
    response.field.add(name="context", number=2, type=message, label=optional, type_name=f".{PACKAGE}.Context")
    response.field.add(name="headers", number=3, type=message, label=repeated, type_name=f".{PACKAGE}.Header")
    service = proto.service.add(name="GrpcEcho")
    for method in METHODS:
        service.method.add(name=method, input_type=f".{PACKAGE}.EchoRequest", output_type=f".{PACKAGE}.EchoResponse")
    return proto


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
EchoRequest = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.EchoRequest"))
EchoResponse = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.EchoResponse"))
Context = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.Context"))
Header = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.Header"))


def method_path(method: str) -> str:
    return f"/{SERVICE}/{method}"
