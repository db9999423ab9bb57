"""gRPC calls to the conformance echo service, from the client namespace; JSON out.

    python -m lab.grpcclient batch [--repeat N] < calls.json

Each call: {"target": "10.99.100.1:80", "authority": "foo.com", "method": "Echo",
"metadata": {"k": "v"}}, plaintext HTTP/2 (h2c, prior knowledge), a new channel per
call. Prints per call the list of answers {"code", "method", "namespace", "pod"}.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import grpc

from lab import grpcecho


def call(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    options = [("grpc.default_authority", spec["authority"])] if spec.get("authority") else []
    with grpc.insecure_channel(spec["target"], options=options) as channel:
        stub = channel.unary_unary(grpcecho.method_path(spec["method"]),
                                   request_serializer=grpcecho.EchoRequest.SerializeToString,
                                   response_deserializer=grpcecho.EchoResponse.FromString)
        try:
            reply = stub(grpcecho.EchoRequest(), timeout=timeout, metadata=list(spec.get("metadata", {}).items()))
        except grpc.RpcError as error:
            return {"code": error.code().name, "details": error.details()}
        return {"code": "OK", "method": reply.fully_qualified_method, "namespace": reply.context.namespace,
                "pod": reply.context.pod}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["batch"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    calls = json.load(sys.stdin)
    out: list[list[dict[str, Any]]] = [[] for _ in calls]
    for _ in range(args.repeat):
        for i, spec in enumerate(calls):
            out[i].append(call(spec, args.timeout))
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
