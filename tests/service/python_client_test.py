"""A Python client (Debian's python3-grpcio, stubs generated from proto/) against
the real nokv_server binary: every KV RPC, error codes, health checking, server
reflection, SIGKILL durability of synced writes and graceful SIGTERM shutdown.

Usage: python_client_test.py SERVER_BINARY (run by python_client_test.sh).
"""
import os
import signal
import subprocess
import sys
import tempfile
import unittest

import grpc
from google.protobuf import descriptor_pb2

from nokv.v1 import kv_pb2, kv_pb2_grpc
import health_pb2
import health_pb2_grpc
import reflection_pb2
import reflection_pb2_grpc

SERVER = None  # path of nokv_server, from argv


class Server:
    """One nokv_server process on 127.0.0.1 with a free port."""

    def __init__(self, data_dir, *flags):
        self.proc = subprocess.Popen(
            [SERVER, "--listen=127.0.0.1:0", "--data_dir=" + data_dir, *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError("server did not start: %r %s" % (line, self.proc.stderr.read()))
        self.address = line.split("listening on ")[1].split(",")[0]
        self.channel = grpc.insecure_channel(self.address)
        grpc.channel_ready_future(self.channel).result(timeout=30)
        self.kv = kv_pb2_grpc.KVStub(self.channel)

    def stop(self, sig=signal.SIGTERM):
        self.channel.close()
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=60)
        err = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc, err


class PythonClientTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(dir=os.environ.get("TEST_TMPDIR"))
        self.dir = os.path.join(self.tmp.name, "data")
        self.server = Server(self.dir, "--scan_chunk_bytes=4096")

    def tearDown(self):
        if self.server is not None:
            self.server.stop(signal.SIGKILL)
        self.tmp.cleanup()

    def test_put_get_delete(self):
        kv = self.server.kv
        put = kv.Put(kv_pb2.PutRequest(key=b"alpha", value=b"1"))
        self.assertGreater(put.commit_ts, 0)
        got = kv.Get(kv_pb2.GetRequest(key=b"alpha"))
        self.assertTrue(got.found)
        self.assertEqual(got.value, b"1")
        self.assertEqual(got.commit_ts, put.commit_ts)
        put2 = kv.Put(kv_pb2.PutRequest(key=b"alpha", value=b"2"))
        dele = kv.Delete(kv_pb2.DeleteRequest(key=b"alpha"))
        self.assertGreater(dele.commit_ts, put2.commit_ts)
        self.assertFalse(kv.Get(kv_pb2.GetRequest(key=b"alpha")).found)
        # Snapshot reads at older timestamps.
        self.assertEqual(kv.Get(kv_pb2.GetRequest(key=b"alpha", read_ts=put.commit_ts)).value, b"1")
        self.assertEqual(kv.Get(kv_pb2.GetRequest(key=b"alpha", read_ts=put2.commit_ts)).value, b"2")

    def test_scan_streams_in_bounded_chunks(self):
        kv = self.server.kv
        for i in range(300):
            kv.Put(kv_pb2.PutRequest(key=b"k%04d" % i, value=b"v" * 100))
        kv.Put(kv_pb2.PutRequest(key=b"z", value=b"outside"))
        chunks = list(kv.Scan(kv_pb2.ScanRequest(start=b"k", end=b"l")))
        keys = [p.key for c in chunks for p in c.kvs]
        self.assertEqual(keys, [b"k%04d" % i for i in range(300)])
        self.assertGreater(len(chunks), 5)
        for c in chunks:
            self.assertLessEqual(sum(len(p.key) + len(p.value) for p in c.kvs), 4096 + 105)
            self.assertEqual(c.read_ts, chunks[0].read_ts)
        limited = [p.key for c in kv.Scan(kv_pb2.ScanRequest(start=b"k0100", limit=7)) for p in c.kvs]
        self.assertEqual(limited, [b"k%04d" % i for i in range(100, 107)])

    def test_errors_map_to_status_codes(self):
        kv = self.server.kv
        for call in (lambda: kv.Put(kv_pb2.PutRequest(key=b"", value=b"x")),
                     lambda: kv.Get(kv_pb2.GetRequest(key=b"")),
                     lambda: kv.Delete(kv_pb2.DeleteRequest(key=b"")),
                     lambda: kv.Put(kv_pb2.PutRequest(key=b"k" * 70000, value=b"x")),
                     lambda: list(kv.Scan(kv_pb2.ScanRequest(start=b"b", end=b"a")))):
            with self.assertRaises(grpc.RpcError) as err:
                call()
            self.assertEqual(err.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            self.assertTrue(err.exception.details())

    def test_stats(self):
        self.server.kv.Put(kv_pb2.PutRequest(key=b"a", value=b"b"))
        stats = self.server.kv.Stats(kv_pb2.StatsRequest())
        self.assertEqual(stats.counters["puts"], 1)
        self.assertEqual(stats.data_dir, self.dir)
        self.assertGreater(stats.last_commit_ts, 0)

    def test_health_checking(self):
        health = health_pb2_grpc.HealthStub(self.server.channel)
        for service in ("", "nokv.v1.KV"):
            resp = health.Check(health_pb2.HealthCheckRequest(service=service))
            self.assertEqual(resp.status, health_pb2.HealthCheckResponse.SERVING)

    def test_server_reflection(self):
        stub = reflection_pb2_grpc.ServerReflectionStub(self.server.channel)
        reqs = [reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="nokv.v1.KV")]
        resps = list(stub.ServerReflectionInfo(iter(reqs)))
        names = {s.name for s in resps[0].list_services_response.service}
        self.assertIn("nokv.v1.KV", names)
        self.assertIn("grpc.health.v1.Health", names)
        fd = descriptor_pb2.FileDescriptorProto.FromString(
            resps[1].file_descriptor_response.file_descriptor_proto[0])
        self.assertEqual(fd.package, "nokv.v1")
        methods = {m.name for m in fd.service[0].method}
        self.assertEqual(methods, {"Get", "Put", "Delete", "Scan", "Stats"})

    def test_sigkill_loses_no_synced_write(self):
        kv = self.server.kv
        for i in range(200):
            kv.Put(kv_pb2.PutRequest(key=b"d%03d" % i, value=b"x%d" % i, sync=True))
        kv.Delete(kv_pb2.DeleteRequest(key=b"d007", sync=True))
        rc, _ = self.server.stop(signal.SIGKILL)
        self.assertEqual(rc, -signal.SIGKILL)
        self.server = Server(self.dir)
        kv = self.server.kv
        for i in range(200):
            got = kv.Get(kv_pb2.GetRequest(key=b"d%03d" % i))
            self.assertEqual(got.found, i != 7, i)
            if i != 7:
                self.assertEqual(got.value, b"x%d" % i)

    def test_sigterm_shuts_down_cleanly(self):
        self.server.kv.Put(kv_pb2.PutRequest(key=b"kept", value=b"1"))
        rc, err = self.server.stop(signal.SIGTERM)
        self.assertEqual(rc, 0, err)
        self.assertIn("stopped cleanly", err)
        self.server = Server(self.dir)
        self.assertEqual(self.server.kv.Get(kv_pb2.GetRequest(key=b"kept")).value, b"1")


if __name__ == "__main__":
    SERVER = sys.argv.pop(1)
    unittest.main(verbosity=2)
