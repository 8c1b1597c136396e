"""A Python client (Debian's python3-grpcio, stubs generated from proto/) against
the real nokv_server binary: every KV RPC, error codes, health checking, server
reflection, transactions over the Txn stream (a conflict surfaces as ABORTED and
the retry succeeds), SIGKILL durability of synced writes and graceful SIGTERM
shutdown.

Usage: python_client_test.py SERVER_BINARY (run by python_client_test.sh).
"""
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import grpc
from google.protobuf import descriptor_pb2

from nokv.v1 import kv_pb2, kv_pb2_grpc
import health_pb2
import health_pb2_grpc
import reflection_pb2
import reflection_pb2_grpc
from server_process import ServerProcess
from txn_client import Txn

SERVER = None  # path of nokv_server, from argv


class Server(ServerProcess):
    """One nokv_server process on 127.0.0.1 with a free port, and a channel to it."""

    def __init__(self, data_dir, *flags):
        super().__init__(SERVER, data_dir, *flags)
        self.channel = grpc.insecure_channel(self.address)
        grpc.channel_ready_future(self.channel).result(timeout=30)
        self.kv = kv_pb2_grpc.KVStub(self.channel)

    def stop(self, sig=signal.SIGTERM):
        self.channel.close()
        return super().stop(sig)


def increment(kv, key):
    """Read-modify-write in a transaction, retried on ABORTED; returns the attempts."""
    attempt = 0
    while True:
        attempt += 1
        txn = Txn(kv)
        try:
            value = txn.get(key)
            txn.put(key, b"%d" % (int(value or b"0") + 1))
            txn.commit()
            return attempt
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.ABORTED:
                raise
            txn.close()


class Watcher:
    """One Watch stream read by a thread into a queue of (commit_ts, events);
    the stream's end (status code, details, trailing metadata) last."""

    def __init__(self, kv, **request):
        self.call = kv.Watch(kv_pb2.WatchRequest(**request))
        self.groups = queue.Queue()
        first = next(self.call)
        assert first.created, first
        self.oldest_ts = first.oldest_ts
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        try:
            for msg in self.call:
                for g in msg.groups:
                    self.groups.put((g.commit_ts, list(g.events)))
            self.groups.put(("end", grpc.StatusCode.OK, "", ()))
        except grpc.RpcError as e:
            self.groups.put(("end", e.code(), e.details(), e.trailing_metadata()))

    def next(self, timeout=10):
        return self.groups.get(timeout=timeout)

    def cancel(self):
        self.call.cancel()


def event_text(e):
    if e.type == kv_pb2.WatchEvent.PUT:
        return "P %s=%s" % (e.key.decode(), e.value.decode())
    if e.type == kv_pb2.WatchEvent.DELETE:
        return "D %s" % e.key.decode()
    return "R %s..%s" % (e.key.decode(), e.range_end.decode())


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

    def test_write_with_conditions(self):
        kv = self.server.kv
        ts = kv.Put(kv_pb2.PutRequest(key=b"cfg", value=b"v1")).commit_ts
        # Compare-and-set by value, plus a second key, in one batch.
        resp = kv.Write(kv_pb2.WriteRequest(
            conditions=[kv_pb2.Condition(key=b"cfg", value_equals=b"v1")],
            mutations=[kv_pb2.Mutation(key=b"cfg", put=b"v2"),
                       kv_pb2.Mutation(key=b"audit", put=b"")]))
        self.assertTrue(resp.succeeded)
        self.assertGreater(resp.commit_ts, ts)
        self.assertEqual(kv.Get(kv_pb2.GetRequest(key=b"audit")).commit_ts, resp.commit_ts)
        # The same condition fails now: nothing written, the key's state named.
        resp = kv.Write(kv_pb2.WriteRequest(
            conditions=[kv_pb2.Condition(key=b"other", absent=True),
                        kv_pb2.Condition(key=b"cfg", commit_ts_equals=ts)],
            mutations=[kv_pb2.Mutation(key=b"cfg", delete=True)]))
        self.assertFalse(resp.succeeded)
        self.assertEqual(resp.failed_condition, 1)
        self.assertTrue(resp.found)
        self.assertGreater(resp.found_commit_ts, ts)
        self.assertEqual(kv.Get(kv_pb2.GetRequest(key=b"cfg")).value, b"v2")
        with self.assertRaises(grpc.RpcError) as e:
            kv.Write(kv_pb2.WriteRequest(conditions=[kv_pb2.Condition(key=b"cfg")]))
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def test_ttl(self):
        kv = self.server.kv
        kv.Put(kv_pb2.PutRequest(key=b"session", value=b"s", ttl_ms=300))
        kv.Write(kv_pb2.WriteRequest(mutations=[
            kv_pb2.Mutation(key=b"w", put=b"x", ttl_ms=300),
            kv_pb2.Mutation(key=b"forever", put=b"y")]))
        txn = Txn(kv)
        txn.call(put=kv_pb2.TxnPut(key=b"t", value=b"z", ttl_ms=300))
        txn.commit()
        got = kv.Get(kv_pb2.GetRequest(key=b"session"))
        self.assertTrue(got.found)
        self.assertGreater(got.expires_at_ms, 0)
        self.assertTrue(0 < got.ttl_remaining_ms <= 300, got)
        self.assertEqual(kv.Get(kv_pb2.GetRequest(key=b"forever")).expires_at_ms, 0)
        # Expiry is a point in time: wait for it, then every read finds the keys gone.
        deadline = time.monotonic() + 10
        while kv.Get(kv_pb2.GetRequest(key=b"session")).found and time.monotonic() < deadline:
            time.sleep(0.05)
        for key in (b"session", b"w", b"t"):
            self.assertFalse(kv.Get(kv_pb2.GetRequest(key=key)).found, key)
        keys = [p.key for r in kv.Scan(kv_pb2.ScanRequest()) for p in r.kvs]
        self.assertEqual(keys, [b"forever"])

    def test_delete_range(self):
        kv = self.server.kv
        for i in range(100):
            kv.Put(kv_pb2.PutRequest(key=b"r%03d" % i, value=b"v" * (i % 3 * 600)))
        before = kv.Get(kv_pb2.GetRequest(key=b"r050")).read_ts
        ts = kv.DeleteRange(kv_pb2.DeleteRangeRequest(start=b"r010", end=b"r090")).commit_ts
        self.assertGreater(ts, before)
        keys = [p.key for r in kv.Scan(kv_pb2.ScanRequest(start=b"r", end=b"s")) for p in r.kvs]
        self.assertEqual(keys, [b"r%03d" % i for i in list(range(10)) + list(range(90, 100))])
        self.assertFalse(kv.Get(kv_pb2.GetRequest(key=b"r010")).found)
        # A read at a timestamp before the deletion still finds the keys.
        self.assertTrue(kv.Get(kv_pb2.GetRequest(key=b"r050", read_ts=before)).found)
        # In a Write, atomically with a put: the range [key, delete_range_end).
        resp = kv.Write(kv_pb2.WriteRequest(mutations=[
            kv_pb2.Mutation(key=b"r000", delete_range_end=b"r005"),
            kv_pb2.Mutation(key=b"marker", put=b"m")]))
        self.assertTrue(resp.succeeded)
        self.assertFalse(kv.Get(kv_pb2.GetRequest(key=b"r004")).found)
        self.assertTrue(kv.Get(kv_pb2.GetRequest(key=b"r005")).found)
        self.assertEqual(kv.Get(kv_pb2.GetRequest(key=b"marker")).commit_ts, resp.commit_ts)
        stats = kv.Stats(kv_pb2.StatsRequest())
        self.assertEqual(stats.counters["range_deletes"], 2)
        for bad in (kv_pb2.DeleteRangeRequest(start=b"b", end=b"a"),
                    kv_pb2.DeleteRangeRequest(start=b"a", end=b"a"),
                    kv_pb2.DeleteRangeRequest(start=b"a")):
            with self.assertRaises(grpc.RpcError) as e:
                kv.DeleteRange(bad)
            self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def test_watch(self):
        kv = self.server.kv
        kv.Put(kv_pb2.PutRequest(key=b"w/before", value=b"0"))
        w = Watcher(kv, prefix=b"w/", prev_values=True)
        one = Watcher(kv, key=b"w/a")
        t1 = kv.Put(kv_pb2.PutRequest(key=b"w/a", value=b"1")).commit_ts
        kv.Put(kv_pb2.PutRequest(key=b"x", value=b"outside"))
        t2 = kv.Write(kv_pb2.WriteRequest(mutations=[
            kv_pb2.Mutation(key=b"w/b", put=b"2"),
            kv_pb2.Mutation(key=b"w/a", delete=True)])).commit_ts
        t3 = kv.DeleteRange(kv_pb2.DeleteRangeRequest(start=b"a", end=b"w/b")).commit_ts
        ts, ev = w.next()
        self.assertEqual((ts, [event_text(e) for e in ev]), (t1, ["P w/a=1"]))
        self.assertFalse(ev[0].has_prev)
        ts, ev = w.next()  # a batch is one group, in key order
        self.assertEqual((ts, [event_text(e) for e in ev]), (t2, ["D w/a", "P w/b=2"]))
        self.assertEqual(ev[0].prev_value, b"1")
        ts, ev = w.next()  # the range, clipped to the prefix
        self.assertEqual((ts, [event_text(e) for e in ev]), (t3, ["R w/..w/b"]))
        self.assertEqual([one.next()[0], one.next()[0]], [t1, t2])
        # Resuming from a commit_ts replays from there.
        again = Watcher(kv, prefix=b"w/", start_ts=t2)
        self.assertEqual([again.next()[0], again.next()[0]], [t2, t3])
        stats = kv.Stats(kv_pb2.StatsRequest()).counters
        self.assertEqual(stats["watches_open"], 3)
        self.assertGreaterEqual(stats["watch_events_sent"], 9)
        for x in (w, one, again):
            x.cancel()
        for bad in (kv_pb2.WatchRequest(), kv_pb2.WatchRequest(key=b""),
                    kv_pb2.WatchRequest(range=kv_pb2.KeyRange(start=b"b", end=b"a"))):
            with self.assertRaises(grpc.RpcError) as e:
                next(kv.Watch(bad))
            self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def test_watch_resumes_after_sigkill_and_refuses_a_start_below_history(self):
        kv = self.server.kv
        w = Watcher(kv, range=kv_pb2.KeyRange(start=b"r/", end=b"r0"))
        want = [kv.Put(kv_pb2.PutRequest(key=b"r/%d" % i, value=b"v", sync=True)).commit_ts
                for i in range(40)]
        seen = [w.next()[0] for _ in range(15)]
        self.assertEqual(seen, want[:15])
        self.server.stop(signal.SIGKILL)
        self.server = Server(self.dir)
        kv = self.server.kv
        w = Watcher(kv, range=kv_pb2.KeyRange(start=b"r/", end=b"r0"), start_ts=seen[-1] + 1)
        self.assertEqual([w.next()[0] for _ in range(25)], want[15:])
        w.cancel()
        # Without retention, a compaction moves the history up: an older start
        # is OUT_OF_RANGE, naming the oldest possible.
        self.server.stop(signal.SIGTERM)
        self.server = Server(self.dir, "--history_retention_commits=0")
        kv = self.server.kv
        kv.Put(kv_pb2.PutRequest(key=b"r/x", value=b"1"))
        kv.Compact(kv_pb2.CompactRequest(skip_gc=True))
        with self.assertRaises(grpc.RpcError) as e:
            next(kv.Watch(kv_pb2.WatchRequest(prefix=b"r/", start_ts=want[0])))
        self.assertEqual(e.exception.code(), grpc.StatusCode.OUT_OF_RANGE)
        oldest = dict(e.exception.trailing_metadata())["nokv-oldest-ts"]
        self.assertGreater(int(oldest), want[-1])
        self.assertIn("oldest start: " + oldest, e.exception.details())

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
        self.assertEqual(methods,
                         {"Get", "Put", "Delete", "Scan", "Stats", "Txn", "Checkpoint", "Compact",
                          "Write", "DeleteRange", "Watch", "Cluster", "FetchState"})

    def test_txn_is_isolated_until_commit(self):
        kv = self.server.kv
        t0 = kv.Put(kv_pb2.PutRequest(key=b"x", value=b"1")).commit_ts
        txn = Txn(kv)
        begun = txn.begin()
        self.assertEqual(begun.read_ts, t0)
        self.assertEqual(txn.get(b"x"), b"1")
        txn.put(b"y", b"2")
        txn.delete(b"x")
        self.assertEqual(txn.get(b"y"), b"2")
        self.assertIsNone(txn.get(b"x"))
        self.assertEqual(txn.scan(prefix=b"y"), [(b"y", b"2", 0)])
        self.assertFalse(kv.Get(kv_pb2.GetRequest(key=b"y")).found)
        commit_ts = txn.commit(sync=True)
        self.assertGreater(commit_ts, t0)
        got = kv.Get(kv_pb2.GetRequest(key=b"y"))
        self.assertEqual((got.value, got.commit_ts), (b"2", commit_ts))
        self.assertFalse(kv.Get(kv_pb2.GetRequest(key=b"x")).found)

    def test_txn_conflict_is_aborted_and_the_retry_succeeds(self):
        kv = self.server.kv
        kv.Put(kv_pb2.PutRequest(key=b"counter", value=b"10"))
        a, b = Txn(kv), Txn(kv)
        self.assertEqual(a.get(b"counter"), b"10")
        self.assertEqual(b.get(b"counter"), b"10")
        a.put(b"counter", b"11")
        b.put(b"counter", b"11")
        a.commit()
        with self.assertRaises(grpc.RpcError) as err:
            b.commit()
        self.assertEqual(err.exception.code(), grpc.StatusCode.ABORTED)
        self.assertIn("retry", err.exception.details())
        self.assertEqual(kv.Get(kv_pb2.GetRequest(key=b"counter")).value, b"11")
        self.assertEqual(increment(kv, b"counter"), 1)
        self.assertEqual(kv.Get(kv_pb2.GetRequest(key=b"counter")).value, b"12")
        stats = kv.Stats(kv_pb2.StatsRequest()).counters
        self.assertEqual((stats["txn_commits"], stats["txn_conflicts"]), (2, 1))

    def test_txn_rollback_and_idle_timeout(self):
        kv = self.server.kv
        txn = Txn(kv)
        txn.put(b"r", b"v")
        txn.rollback()
        idle = Txn(kv)
        self.assertEqual(idle.begin(idle_timeout_ms=200).begun.idle_timeout_ms, 200)
        idle.put(b"i", b"v")
        code, details = idle.wait_end()
        self.assertEqual(code, grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertIn("idle", details)
        idle.close()
        for key in (b"r", b"i"):
            self.assertFalse(kv.Get(kv_pb2.GetRequest(key=key)).found)

    def test_txn_past_its_read_limit_conflicts_with_any_later_write(self):
        self.server.stop(signal.SIGKILL)
        self.server = Server(self.dir, "--txn_max_reads=3")
        kv = self.server.kv
        for i in range(5):
            kv.Put(kv_pb2.PutRequest(key=b"s%d" % i, value=b"v"))
        txn = Txn(kv)
        self.assertEqual(len(txn.scan(prefix=b"s")), 5)  # more than 3 keys read
        txn.put(b"sum", b"5")
        kv.Put(kv_pb2.PutRequest(key=b"elsewhere", value=b"x"))  # a key it never read
        with self.assertRaises(grpc.RpcError) as err:
            txn.commit()
        self.assertEqual(err.exception.code(), grpc.StatusCode.ABORTED)
        self.assertIn("max_txn_reads", err.exception.details())
        self.assertFalse(kv.Get(kv_pb2.GetRequest(key=b"sum")).found)

    def test_sigterm_rolls_back_open_transactions_after_the_grace_period(self):
        self.server.stop(signal.SIGKILL)
        self.server = Server(self.dir, "--shutdown_grace_seconds=1")
        kv = self.server.kv
        txn = Txn(kv)
        txn.put(b"open", b"v")
        self.server.proc.send_signal(signal.SIGTERM)
        code, details = txn.wait_end()
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
        self.assertIn("shutting down", details)
        txn.close()
        rc, err = self.server.stop(signal.SIGTERM)
        self.assertEqual(rc, 0, err)
        self.assertIn("stopped cleanly", err)
        self.server = Server(self.dir)
        self.assertFalse(self.server.kv.Get(kv_pb2.GetRequest(key=b"open")).found)

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
