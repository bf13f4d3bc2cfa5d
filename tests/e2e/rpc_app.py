#!/usr/bin/env python3
"""A tiny AnyCable-compatible RPC application (gRPC service `anycable.RPC`),
playing the part of a Rails app behind the ferrocable binary in the
end-to-end test. It is written independently from the Rust code: the stubs
are generated at start-up from proto/rpc.proto into a temporary directory.

Behaviour:
- Connect: authenticates by the cookie `user=<name>`; identifiers are
  `{"user":"<name>"}`, transmissions `[{"type":"welcome"}]`. No cookie:
  FAILURE with a disconnect(unauthorized, reconnect=false) transmission.
- ChatChannel(room): subscribe streams `chat_<room>`, transmits a "hello"
  message (as `transmit` in `subscribed` would) and then the confirmation,
  and keeps istate {"room": "<room>"}. Action `speak` publishes the message
  to Redis (`PUBLISH <redis_channel> {"stream":..,"data":..}`), as
  `ActionCable.server.broadcast` does under AnyCable.
- SecretChannel: rejected (FAILURE + reject_subscription).
- Any other channel: FAILURE.
- Disconnect: recorded, SUCCESS.

Every call is appended as one JSON object per line to the file given by
--log. Contract violations seen on the wire (metadata `protov` not `v1`, no
`sid`, missing REMOTE_ADDR, state not round-tripped, ...) are logged as lines
with "method": "error"; the JS test fails when it finds any.
"""

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
from concurrent import futures

import grpc
import redis
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO = os.path.normpath(os.path.join(HERE, "..", "..", "proto", "rpc.proto"))


def load_stubs(proto_path):
    """Generates rpc_pb2 / rpc_pb2_grpc into a temp dir and imports them."""
    out = tempfile.mkdtemp(prefix="ferrocable-e2e-stubs-")
    proto_dir, proto_file = os.path.split(os.path.abspath(proto_path))
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    rc = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"-I{include}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            proto_file,
        ]
    )
    if rc != 0:
        sys.exit(f"rpc_app: protoc failed with {rc} on {proto_path}")
    sys.path.insert(0, out)
    module = os.path.splitext(proto_file)[0]
    pb2 = __import__(f"{module}_pb2")
    pb2_grpc = __import__(f"{module}_pb2_grpc")
    return pb2, pb2_grpc, out


class Log:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        # Truncate: one log per run.
        open(path, "w").close()

    def write(self, record):
        line = json.dumps(record, sort_keys=True)
        with self.lock:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        print(f"rpc_app: {line}", file=sys.stderr, flush=True)

    def error(self, message, **extra):
        self.write({"method": "error", "error": message, **extra})


def parse_cookies(header):
    cookies = {}
    for part in (header or "").split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            cookies[k.strip()] = v.strip()
    return cookies


def make_servicer(pb2, pb2_grpc, log, publisher, redis_channel):
    class RPC(pb2_grpc.RPCServicer):
        def _meta(self, method, context):
            md = {}
            for key, value in context.invocation_metadata():
                md[key] = value
            sid = md.get("sid", "")
            protov = md.get("protov")
            if protov != "v1":
                log.error(f"{method}: gRPC metadata protov is {protov!r}, expected 'v1'", sid=sid)
            if not sid:
                log.error(f"{method}: gRPC metadata sid is missing or empty")
            return sid

        def _check_env(self, method, env, sid):
            if "REMOTE_ADDR" not in env.headers:
                log.error(f"{method}: Env.headers lacks REMOTE_ADDR", sid=sid,
                          headers=dict(env.headers))
            if not (env.url.startswith("http://") or env.url.startswith("ws://")) or "/cable" not in env.url:
                log.error(f"{method}: Env.url is not an absolute /cable URL: {env.url!r}", sid=sid)
            extra = set(env.headers) - {"cookie", "REMOTE_ADDR"}
            if extra:
                log.error(f"{method}: Env.headers has headers not allow-listed: {sorted(extra)}",
                          sid=sid)

        def Connect(self, request, context):
            sid = self._meta("Connect", context)
            env = request.env
            self._check_env("Connect", env, sid)
            user = parse_cookies(env.headers.get("cookie")).get("user")
            log.write({
                "method": "Connect",
                "sid": sid,
                "url": env.url,
                "headers": dict(env.headers),
                "user": user,
            })
            if not user:
                return pb2.ConnectionResponse(
                    status=pb2.FAILURE,
                    transmissions=[json.dumps(
                        {"type": "disconnect", "reason": "unauthorized", "reconnect": False})],
                    error_msg="unauthorized",
                )
            return pb2.ConnectionResponse(
                status=pb2.SUCCESS,
                identifiers=json.dumps({"user": user}),
                transmissions=[json.dumps({"type": "welcome"})],
            )

        def Command(self, request, context):
            sid = self._meta("Command", context)
            env = request.env
            self._check_env("Command", env, sid)
            record = {
                "method": "Command",
                "sid": sid,
                "command": request.command,
                "identifier": request.identifier,
                "connection_identifiers": request.connection_identifiers,
                "data": request.data,
                "istate": dict(env.istate),
                "cstate": dict(env.cstate),
            }
            log.write(record)
            try:
                ident = json.loads(request.identifier)
                conn = json.loads(request.connection_identifiers)
            except ValueError as e:
                log.error(f"Command: identifier/connection_identifiers not JSON: {e}", sid=sid)
                return pb2.CommandResponse(status=pb2.ERROR, error_msg=str(e))
            user = conn.get("user")
            channel = ident.get("channel")

            if request.command == "subscribe":
                if channel == "ChatChannel" and ident.get("room") not in (None, ""):
                    room = str(ident["room"])
                    hello = json.dumps({"identifier": request.identifier,
                                        "message": {"hello": user}})
                    confirm = json.dumps({"type": "confirm_subscription",
                                          "identifier": request.identifier})
                    return pb2.CommandResponse(
                        status=pb2.SUCCESS,
                        streams=[f"chat_{room}"],
                        transmissions=[hello, confirm],
                        env=pb2.EnvResponse(istate={"room": room}),
                    )
                if channel == "SecretChannel":
                    reject = json.dumps({"type": "reject_subscription",
                                         "identifier": request.identifier})
                    return pb2.CommandResponse(status=pb2.FAILURE, transmissions=[reject])
                return pb2.CommandResponse(status=pb2.FAILURE,
                                           error_msg=f"unknown channel {channel!r}")

            if request.command == "unsubscribe":
                return pb2.CommandResponse(status=pb2.SUCCESS)

            if request.command == "message":
                if channel != "ChatChannel":
                    return pb2.CommandResponse(status=pb2.FAILURE, error_msg="no such channel")
                try:
                    data = json.loads(request.data)
                except ValueError as e:
                    log.error(f"Command: data is not JSON: {e}", sid=sid)
                    return pb2.CommandResponse(status=pb2.ERROR, error_msg=str(e))
                room = str(ident.get("room"))
                if env.istate.get("room") != room:
                    log.error("Command(message): istate did not round-trip",
                              sid=sid, istate=dict(env.istate), expected_room=room)
                if data.get("action") != "speak":
                    return pb2.CommandResponse(status=pb2.FAILURE,
                                               error_msg=f"unknown action {data.get('action')!r}")
                payload = json.dumps({
                    "stream": f"chat_{room}",
                    "data": json.dumps({"user": user, "text": data.get("text")}),
                })
                receivers = publisher.publish(redis_channel, payload)
                log.write({"method": "publish", "sid": sid, "channel": redis_channel,
                           "payload": payload, "receivers": receivers})
                return pb2.CommandResponse(status=pb2.SUCCESS)

            log.error(f"Command: unknown command {request.command!r}", sid=sid)
            return pb2.CommandResponse(status=pb2.ERROR, error_msg="unknown command")

        def Disconnect(self, request, context):
            sid = self._meta("Disconnect", context)
            env = request.env
            self._check_env("Disconnect", env, sid)
            log.write({
                "method": "Disconnect",
                "sid": sid,
                "identifiers": request.identifiers,
                "subscriptions": list(request.subscriptions),
                "istate": dict(env.istate),
                "cstate": dict(env.cstate),
            })
            return pb2.DisconnectResponse(status=pb2.SUCCESS)

    return RPC()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True, help="JSON-lines file of every call")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379")
    parser.add_argument("--redis-channel", default="__anycable__")
    parser.add_argument("--proto", default=DEFAULT_PROTO)
    args = parser.parse_args()

    pb2, pb2_grpc, stubs_dir = load_stubs(args.proto)
    log = Log(args.log)
    publisher = redis.Redis.from_url(args.redis_url)
    publisher.ping()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    pb2_grpc.add_RPCServicer_to_server(
        make_servicer(pb2, pb2_grpc, log, publisher, args.redis_channel), server)
    bound = server.add_insecure_port(f"{args.host}:{args.port}")
    if bound != args.port:
        sys.exit(f"rpc_app: could not bind {args.host}:{args.port}")
    server.start()
    print(f"rpc_app: listening on {args.host}:{args.port} (stubs in {stubs_dir})",
          file=sys.stderr, flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=1).wait()
    import shutil
    shutil.rmtree(stubs_dir, ignore_errors=True)
    print("rpc_app: stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
