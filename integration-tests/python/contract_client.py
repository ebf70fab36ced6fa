#!/usr/bin/env python3
"""A client of the rollover.v1 gRPC contract built from nothing but the servers.

It uses the stock Python gRPC packages (grpcio, grpcio-reflection, protobuf) and no
generated code: every message type comes from the servers' v1alpha reflection
(grpc_reflection's ProtoReflectionDescriptorDatabase), as any client in another
language could. It

1. lists the services of every server given (planner, executor, agents) by v1alpha
   reflection and checks each lists its own service, health and both reflection
   versions, and no service it does not serve;
2. plans the topology (PlannerService.Plan) and verifies the plan (Verify);
3. starts a rotation with a request_id (ExecutorService.StartRotation), retries it
   with the same id and checks the same rotation comes back, deduplicated;
4. follows its events (WatchRotation) to the Finished event, reads its status
   (GetRotation) and finds it by paging ListRotations one rotation per page.

It prints one line per finding and `OK` at the end; it exits 1 on the first failed
check (naming it), 2 on bad arguments.

Usage:
  contract_client.py --topology FLEET.yaml --planner http://127.0.0.1:7000 \
      --executor http://127.0.0.1:7001 \
      --agent gw=https://127.0.0.1:7002,gw.node.rollover ... \
      [--ca CA.pem --cert CERT.pem --key KEY.pem]

`https://` addresses are reached over mTLS with --ca/--cert/--key; TLS-NAME is the
DNS name the agent's certificate carries (default: its id).
"""

import argparse
import sys
import uuid

import grpc
from google.protobuf import descriptor_pool, json_format
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

try:
    from google.protobuf.message_factory import GetMessageClass
except ImportError:  # protobuf < 4.21
    from google.protobuf import message_factory

    _FACTORY = message_factory.MessageFactory()

    def GetMessageClass(descriptor):  # noqa: N802 (protobuf's name)
        return _FACTORY.GetPrototype(descriptor)


HEALTH = "grpc.health.v1.Health"
REFLECTION = {"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"}
OWN = {
    "planner": "rollover.v1.PlannerService",
    "executor": "rollover.v1.ExecutorService",
    "agent": "rollover.v1.AgentService",
}
TIMEOUT = 120.0


class CheckFailed(Exception):
    pass


def check(condition, what):
    if not condition:
        raise CheckFailed(what)


class Server:
    """One gRPC server, its channel, and the descriptors its reflection gives."""

    def __init__(self, kind, name, url, tls, server_name):
        self.kind, self.name = kind, name
        if url.startswith("https://"):
            if tls is None:
                raise SystemExit(f"{url}: https needs --ca, --cert and --key")
            options = [("grpc.ssl_target_name_override", server_name)]
            self.channel = grpc.secure_channel(url[len("https://"):], tls, options=options)
        else:
            self.channel = grpc.insecure_channel(url.removeprefix("http://"))
        self.db = ProtoReflectionDescriptorDatabase(self.channel)
        self.pool = descriptor_pool.DescriptorPool(self.db)

    def services(self):
        return set(self.db.get_services())

    def _method(self, service, method):
        descriptor = self.pool.FindServiceByName(service).methods_by_name[method]
        request = GetMessageClass(descriptor.input_type)
        response = GetMessageClass(descriptor.output_type)
        path = f"/{service}/{method}"
        if descriptor.server_streaming:
            stub = self.channel.unary_stream(
                path,
                request_serializer=request.SerializeToString,
                response_deserializer=response.FromString,
            )
        else:
            stub = self.channel.unary_unary(
                path,
                request_serializer=request.SerializeToString,
                response_deserializer=response.FromString,
            )
        return request, stub

    def call(self, method, fields):
        """Calls `method` of the server's own service with a request made from
        `fields` (proto field names); returns the response as a dict."""
        request, stub = self._method(OWN[self.kind], method)
        response = stub(json_format.ParseDict(fields, request()), timeout=TIMEOUT)
        return as_dict(response)

    def stream(self, method, fields):
        request, stub = self._method(OWN[self.kind], method)
        for response in stub(json_format.ParseDict(fields, request()), timeout=TIMEOUT):
            yield as_dict(response)


def as_dict(message):
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def list_services(server):
    services = server.services()
    print(f"services {server.name}: {' '.join(sorted(services))}")
    want = {OWN[server.kind], HEALTH} | REFLECTION
    check(services == want, f"{server.name} lists {sorted(services)}, want {sorted(want)}")


def rotate(planner, executor, topology_path):
    with open(topology_path, encoding="utf-8") as f:
        text = f.read()
    topology = {"document": {"text": text, "origin": topology_path}}

    plan = planner.call("Plan", {"topology": topology, "strategy": "STRATEGY_WAVES"})["plan"]
    print(f"plan: {len(plan['steps'])} steps, strategy {plan.get('strategy', '?')}")
    verdict = planner.call("Verify", {"topology": topology, "plan": {"plan": plan}})["verdict"]
    check(verdict.get("safe", False), f"the planner's plan is unsafe: {verdict}")
    print(f"verify: safe, {verdict.get('waves', 0)} waves")

    request = {
        "topology": topology,
        "plan": {"plan": plan},
        "options": {"probe": True},
        "request_id": str(uuid.uuid4()),
    }
    started = executor.call("StartRotation", request)
    rotation_id = started["rotation_id"]
    check(not started.get("deduplicated", False), "a first StartRotation says deduplicated")
    again = executor.call("StartRotation", request)
    check(
        again["rotation_id"] == rotation_id and again.get("deduplicated", False),
        f"a retried StartRotation gave {again['rotation_id']} (deduplicated "
        f"{again.get('deduplicated', False)}), want {rotation_id} deduplicated",
    )
    print(f"start: rotation {rotation_id}; retry with the same request_id: same rotation")

    kinds, outcome = {}, None
    for response in executor.stream("WatchRotation", {"rotation_id": rotation_id}):
        event = response["event"]
        kind = next(k for k in event if k not in ("rotation_id", "sequence", "time"))
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind == "finished":
            outcome = event["finished"].get("outcome")
    summary = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
    print(f"watch: {summary}")
    check(outcome == "ROTATION_STATE_SUCCEEDED", f"the rotation finished {outcome}")

    status = executor.call("GetRotation", {"rotation_id": rotation_id})["rotation"]
    check(status["state"] == "ROTATION_STATE_SUCCEEDED", f"GetRotation: {status}")
    print(
        f"status: {status['state']}, {status.get('steps_done', 0)}/"
        f"{status.get('steps_total', 0)} steps"
    )

    seen, token, pages = [], "", 0
    while True:
        page = executor.call("ListRotations", {"page_size": 1, "page_token": token})
        pages += 1
        rotations = page.get("rotations", [])
        check(len(rotations) <= 1, f"a page of size 1 held {len(rotations)} rotations")
        seen += [r["id"] for r in rotations]
        token = page.get("next_page_token", "")
        if not token:
            break
        check(pages < 1000, "ListRotations never ends")
    check(rotation_id in seen, f"ListRotations pages do not list {rotation_id}: {seen}")
    check(len(seen) == len(set(seen)), f"ListRotations pages repeat a rotation: {seen}")
    print(f"list: {len(seen)} rotation(s) in {pages} page(s) of 1")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topology", required=True)
    parser.add_argument("--planner", required=True)
    parser.add_argument("--executor", required=True)
    parser.add_argument("--agent", action="append", default=[], metavar="ID=URL[,TLS-NAME]")
    parser.add_argument("--ca")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()

    tls = None
    if args.ca and args.cert and args.key:
        read = lambda path: open(path, "rb").read()  # noqa: E731
        tls = grpc.ssl_channel_credentials(read(args.ca), read(args.key), read(args.cert))
    planner = Server("planner", "planner", args.planner, tls, "planner")
    executor = Server("executor", "executor", args.executor, tls, "@executor")
    agents = []
    for spec in args.agent:
        node, sep, target = spec.partition("=")
        if not sep:
            parser.error(f"--agent {spec}: want ID=URL[,TLS-NAME]")
        url, _, tls_name = target.partition(",")
        agents.append(Server("agent", f"agent {node}", url, tls, tls_name or node))

    try:
        for server in [planner, executor, *agents]:
            list_services(server)
        rotate(planner, executor, args.topology)
    except CheckFailed as failed:
        print(f"FAILED: {failed}")
        return 1
    except grpc.RpcError as error:
        print(f"FAILED: RPC error {error.code().name}: {error.details()}")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
