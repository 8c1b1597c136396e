"""Code generation from .proto files with the system protoc (no proto toolchain to download)."""

_PROTOC = "@nokv_system//:bin/protoc"
_GRPC_CPP = "@nokv_system//:bin/grpc_cpp_plugin"
_GRPC_PY = "@nokv_system//:bin/grpc_python_plugin"

def _stem(src):
    return src[:-len(".proto")]

def nokv_cc_grpc_library(name, srcs, deps = [], grpc = True, visibility = None):
    """C++ messages (and gRPC stubs if grpc) for srcs, importable as "<path>.pb.h".

    srcs are paths relative to this package, which is the proto import root.
    """
    outs = []
    for s in srcs:
        outs += [_stem(s) + ".pb.h", _stem(s) + ".pb.cc"]
        if grpc:
            outs += [_stem(s) + ".grpc.pb.h", _stem(s) + ".grpc.pb.cc"]
    pkg = native.package_name()
    cmd = "$(location %s) -I%s --cpp_out=$(RULEDIR)" % (_PROTOC, pkg or ".")
    tools = [_PROTOC]
    if grpc:
        cmd += " --grpc_out=$(RULEDIR) --plugin=protoc-gen-grpc=$(location %s)" % _GRPC_CPP
        tools.append(_GRPC_CPP)
    cmd += " " + " ".join(["$(location %s)" % s for s in srcs])
    native.genrule(name = name + "_gen", srcs = srcs, outs = outs, cmd = cmd, tools = tools)
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        includes = ["."],
        deps = deps + ["@nokv_system//:grpcpp" if grpc else "@nokv_system//:protobuf"],
        visibility = visibility,
    )

def nokv_py_grpc_library(name, srcs, visibility = None):
    """Python messages and gRPC stubs (<stem>_pb2.py, <stem>_pb2_grpc.py) for srcs."""
    outs = []
    for s in srcs:
        outs += [_stem(s) + "_pb2.py", _stem(s) + "_pb2_grpc.py"]
    pkg = native.package_name()
    native.genrule(
        name = name,
        srcs = srcs,
        outs = outs,
        cmd = "$(location %s) -I%s --python_out=$(RULEDIR) --grpc_out=$(RULEDIR) " % (_PROTOC, pkg or ".") +
              "--plugin=protoc-gen-grpc=$(location %s) " % _GRPC_PY +
              " ".join(["$(location %s)" % s for s in srcs]),
        tools = [_PROTOC, _GRPC_PY],
        visibility = visibility,
    )

_PROTOC_C = "@nokv_system//:bin/protoc-c"

def nokv_c_proto_library(name, srcs, visibility = None):
    """C messages (protobuf-c) for srcs, importable as "<stem>.pb-c.h"."""
    outs = []
    for s in srcs:
        outs += [_stem(s) + ".pb-c.h", _stem(s) + ".pb-c.c"]
    pkg = native.package_name()
    native.genrule(
        name = name + "_gen",
        srcs = srcs,
        outs = outs,
        cmd = "$(location %s) -I%s --c_out=$(RULEDIR) " % (_PROTOC_C, pkg or ".") +
              " ".join(["$(location %s)" % s for s in srcs]),
        tools = [_PROTOC_C],
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".c")],
        hdrs = [o for o in outs if o.endswith(".h")],
        includes = ["."],
        copts = ["-std=c11"],
        deps = ["@nokv_system//:protobuf_c"],
        visibility = visibility,
    )
