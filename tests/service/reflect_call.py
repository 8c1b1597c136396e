"""A grpcurl work-alike that knows nothing but what server reflection tells it.

It takes grpcurl's command line for the calls the documentation prints

    reflect_call.py [-plaintext] [-cacert F] [-cert F -key F] [-H 'k: v']... [-unix]
                    [-d JSON|@] ADDRESS (list [SERVICE] | describe SYMBOL | SERVICE/METHOD)

resolves every message type through grpc.reflection.v1alpha (no .proto files),
turns the JSON request(s) into messages, makes the call (unary or streaming)
and prints each response as JSON, exiting non-zero with the status on an error,
as grpcurl does. With `-d @` the requests are read from standard input: one or
more JSON objects, one per streamed message.
"""

import json
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

import reflection_pb2
import reflection_pb2_grpc


class Reflection:
    """Resolves symbols into a local descriptor pool, file by file."""

    def __init__(self, channel, metadata):
        self.stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        self.metadata = metadata
        self.pool = descriptor_pool.DescriptorPool()
        self.factory = message_factory.MessageFactory(self.pool)
        self.added = set()

    def _ask(self, **request):
        resp = next(iter(self.stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(**request)]), metadata=self.metadata)))
        if resp.HasField("error_response"):
            raise LookupError(resp.error_response.error_message)
        return resp

    def services(self):
        return [s.name for s in self._ask(list_services="").list_services_response.service]

    def _add(self, protos):
        by_name = {}
        for raw in protos:
            fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
            by_name[fd.name] = fd

        def add(name):
            if name in self.added:
                return
            if name not in by_name:
                self._add(self._ask(file_by_filename=name).file_descriptor_response
                          .file_descriptor_proto)
                return
            for dep in by_name[name].dependency:
                add(dep)
            self.pool.Add(by_name[name])
            self.added.add(name)

        for name in by_name:
            add(name)

    def _lookup(self, symbol):
        for find in (self.pool.FindServiceByName, self.pool.FindMessageTypeByName,
                     self.pool.FindEnumTypeByName, self.pool.FindMethodByName):
            try:
                return find(symbol)
            except KeyError:
                pass
        return None

    def find(self, symbol):
        desc = self._lookup(symbol)
        if desc is None:
            resp = self._ask(file_containing_symbol=symbol)
            self._add(resp.file_descriptor_response.file_descriptor_proto)
            desc = self._lookup(symbol)
        if desc is None:
            raise LookupError(f"{symbol} not found")
        return desc

    def message_class(self, descriptor):
        return self.factory.GetPrototype(descriptor)


def describe(desc):
    if hasattr(desc, "methods"):
        lines = [f"{desc.full_name} is a service:", f"service {desc.name} {{"]
        for m in desc.methods:
            cs = "stream " if m.client_streaming else ""
            ss = "stream " if m.server_streaming else ""
            lines.append(f"  rpc {m.name} ( {cs}.{m.input_type.full_name} ) returns "
                         f"( {ss}.{m.output_type.full_name} );")
        lines.append("}")
        return "\n".join(lines)
    if hasattr(desc, "fields"):
        lines = [f"{desc.full_name} is a message:", f"message {desc.name} {{"]
        for f in desc.fields:
            lines.append(f"  {f.name} = {f.number};")
        lines.append("}")
        return "\n".join(lines)
    return f"{desc.full_name}"


def json_objects(text):
    decoder = json.JSONDecoder()
    pos, out = 0, []
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return out
        obj, pos = decoder.raw_decode(text, pos)
        out.append(json.dumps(obj))


def parse_args(argv):
    opts = {"plaintext": False, "data": None, "headers": [], "cacert": None, "cert": None,
            "key": None, "unix": False, "authority": None, "max_time": None}
    args = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-plaintext", "-unix"):
            opts[a[1:]] = True
        elif a in ("-d", "-H", "-cacert", "-cert", "-key", "-authority", "-max-time"):
            i += 1
            if a == "-H":
                opts["headers"].append(argv[i])
            elif a == "-max-time":
                opts["max_time"] = float(argv[i])
            else:
                opts[{"-d": "data"}.get(a, a[1:])] = argv[i]
        elif a.startswith("-"):
            raise SystemExit(f"reflect_call: unknown flag {a}")
        else:
            args.append(a)
        i += 1
    if not args:
        raise SystemExit("reflect_call: no address")
    return opts, args


def main(argv):
    opts, args = parse_args(argv)
    address, verb = args[0], args[1:]
    target = f"unix:{address}" if opts["unix"] else address
    channel_opts = []
    if opts["authority"]:
        channel_opts.append(("grpc.ssl_target_name_override", opts["authority"]))
    if opts["plaintext"]:
        channel = grpc.insecure_channel(target, options=channel_opts)
    else:
        def read(path):
            if path is None:
                return None
            with open(path, "rb") as f:
                return f.read()
        creds = grpc.ssl_channel_credentials(read(opts["cacert"]), read(opts["key"]),
                                             read(opts["cert"]))
        channel = grpc.secure_channel(target, creds, options=channel_opts)
    metadata = []
    for h in opts["headers"]:
        k, _, v = h.partition(":")
        metadata.append((k.strip().lower(), v.strip()))

    refl = Reflection(channel, metadata)
    try:
        if not verb or verb[0] == "list":
            if len(verb) > 1:
                svc = refl.find(verb[1])
                for m in svc.methods:
                    print(m.full_name)
            else:
                for s in sorted(refl.services()):
                    print(s)
            return 0
        if verb[0] == "describe":
            print(describe(refl.find(verb[1])))
            return 0
        service, _, method_name = verb[0].rpartition("/")
        if not service:
            service, _, method_name = verb[0].rpartition(".")
        method = refl.find(service).methods_by_name[method_name]
        req_cls = refl.message_class(method.input_type)
        resp_cls = refl.message_class(method.output_type)
        data = opts["data"]
        if data == "@":
            data = sys.stdin.read()
        texts = json_objects(data) if data else ["{}"]
        requests = [json_format.Parse(t, req_cls()) for t in texts]
        path = f"/{service}/{method_name}"
        kind = ("stream_" if method.client_streaming else "unary_") + \
               ("stream" if method.server_streaming else "unary")
        call = getattr(channel, kind)(path, request_serializer=lambda m: m.SerializeToString(),
                                      response_deserializer=resp_cls.FromString)
        timeout = opts["max_time"]
        if method.client_streaming:
            result = call(iter(requests), metadata=metadata, timeout=timeout)
        else:
            if len(requests) != 1:
                raise SystemExit(f"reflect_call: {path} takes one request, got {len(requests)}")
            result = call(requests[0], metadata=metadata, timeout=timeout)
        responses = result if method.server_streaming else [result]
        for r in responses:
            print(json_format.MessageToJson(r, preserving_proto_field_name=False), flush=True)
        return 0
    except grpc.RpcError as e:
        print(f"ERROR:\n  Code: {e.code().name}\n  Message: {e.details()}", file=sys.stderr)
        return 1
    except LookupError as e:
        print(f"Failed to resolve symbol: {e}", file=sys.stderr)
        return 1
    finally:
        channel.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
