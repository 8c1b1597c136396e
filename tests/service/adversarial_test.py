"""Adversarial and careless clients against the real nokv_server (an outside
Python client): requests at and past every limit, misuse of the streams,
clients that freeze, vanish or speak garbage. Each case asserts the status code;
after all of them the server must still answer, its descriptors must be back to
their baseline and its memory bounded, and SIGTERM with streams still open must
stop it cleanly (exit 0) within the grace period.

Usage: adversarial_test.py SERVER_BINARY (run by adversarial_test.sh).
"""
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import grpc

from nokv.v1 import kv_pb2, kv_pb2_grpc

SERVER = None
MEMTABLE = 1 << 20
MAX_VALUE = 4 << 20
GRACE_S = 2
FLAGS = [
    "--memtable_bytes=%d" % MEMTABLE,
    "--max_value_bytes=%d" % MAX_VALUE,
    "--value_threshold=0",           # everything in the memtable: the size limits bite
    "--max_scans=4",
    "--scan_idle_timeout_ms=400",
    "--txn_idle_timeout_ms=400",
    "--max_stream_lifetime_ms=5000",
    "--txn_buffer_bytes=%d" % (2 << 20),
    "--scan_chunk_bytes=4096",
    "--shutdown_grace_seconds=%d" % GRACE_S,
    "--history_retention_commits=0",  # a flush moves the history horizon up (test_b)
]
C = grpc.StatusCode


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_until(cond, timeout=10.0):
    """Polls cond (a condition on the server's state) until it holds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)  # polling interval
    return cond()


class ServerCase(unittest.TestCase):
    """One real server (started with cls.flags) for the class's tests."""
    flags = FLAGS

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.proc = subprocess.Popen(
            [SERVER, "--listen=127.0.0.1:0", "--data_dir=" + cls.tmp.name + "/d", *cls.flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = cls.proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError("server did not start: %r %s" % (line, cls.proc.stderr.read()))
        cls.address = line.split("listening on ")[1].split(",")[0]
        cls.port = int(cls.address.rsplit(":", 1)[1])
        opts = [("grpc.max_send_message_length", 64 << 20),
                ("grpc.max_receive_message_length", 64 << 20)]
        cls.channel = grpc.insecure_channel(cls.address, options=opts)
        grpc.channel_ready_future(cls.channel).result(timeout=30)
        cls.kv = kv_pb2_grpc.KVStub(cls.channel)
        cls.base_fds = fds(cls.proc.pid)
        cls.base_rss = rss_kb(cls.proc.pid)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        if cls.proc.poll() is None:
            cls.proc.kill()
            cls.proc.wait()
        cls.proc.stdout.close()
        cls.proc.stderr.close()
        cls.tmp.cleanup()

    def code(self, call, *args, **kw):
        try:
            call(*args, timeout=20, **kw)
            return C.OK
        except grpc.RpcError as e:
            return e.code()

    def counter(self, name):
        return self.kv.Stats(kv_pb2.StatsRequest(), timeout=10).counters[name]


class Adversarial(ServerCase):

    # ---- limits ----

    def test_a_keys_and_values_at_and_past_each_limit(self):
        put = self.kv.Put
        self.assertEqual(self.code(put, kv_pb2.PutRequest(key=b"", value=b"v")), C.INVALID_ARGUMENT)
        self.assertEqual(self.code(put, kv_pb2.PutRequest(key=b"k" * 65536, value=b"v")), C.OK)
        self.assertEqual(self.code(put, kv_pb2.PutRequest(key=b"k" * 65537, value=b"v")),
                         C.INVALID_ARGUMENT)
        self.assertEqual(self.code(put, kv_pb2.PutRequest(key=b"empty", value=b"")), C.OK)
        got = self.kv.Get(kv_pb2.GetRequest(key=b"empty"), timeout=10)
        self.assertTrue(got.found)
        self.assertEqual(got.value, b"")
        # Just under the memtable: taken at once (it used to wedge every write).
        t = time.monotonic()
        self.assertEqual(self.code(put, kv_pb2.PutRequest(key=b"big", value=b"b" * (MEMTABLE - 200))),
                         C.OK)
        self.assertLess(time.monotonic() - t, 10)
        self.assertEqual(self.code(put, kv_pb2.PutRequest(key=b"after", value=b"x")), C.OK)
        # Past the memtable, and past max_value_bytes: refused up front.
        self.assertEqual(self.code(put, kv_pb2.PutRequest(key=b"over", value=b"o" * MEMTABLE)),
                         C.INVALID_ARGUMENT)
        self.assertEqual(self.code(put, kv_pb2.PutRequest(key=b"over", value=b"o" * (MAX_VALUE + 1))),
                         C.INVALID_ARGUMENT)
        self.assertLess(self.counter("flushes"), 10)
        self.assertEqual(self.code(self.kv.Delete, kv_pb2.DeleteRequest(key=b"")), C.INVALID_ARGUMENT)
        self.assertEqual(self.code(self.kv.Get, kv_pb2.GetRequest(key=b"")), C.INVALID_ARGUMENT)

    def test_a_write_at_and_past_each_limit(self):
        write = self.kv.Write
        W, M, Cn = kv_pb2.WriteRequest, kv_pb2.Mutation, kv_pb2.Condition
        # A batch past the memtable, a key past the limit, a TTL past the clock:
        # refused up front, nothing written.
        big = [M(key=b"w%d" % i, put=b"v" * 40000) for i in range(MEMTABLE // 40000 + 2)]
        self.assertEqual(self.code(write, W(mutations=big)), C.INVALID_ARGUMENT)
        self.assertEqual(self.code(write, W(mutations=[M(key=b"k" * 65537, put=b"v")])),
                         C.INVALID_ARGUMENT)
        self.assertEqual(self.code(write, W(mutations=[M(key=b"ttl", put=b"v",
                                                          ttl_ms=(1 << 64) - 1)])),
                         C.INVALID_ARGUMENT)
        self.assertFalse(self.kv.Get(kv_pb2.GetRequest(key=b"w0"), timeout=10).found)
        # Conditions on many keys, and a condition key past the limit.
        many = [Cn(key=b"c%d" % i, absent=True) for i in range(20000)]
        t = time.monotonic()
        resp = write(W(conditions=many, mutations=[M(key=b"after-many", put=b"x")]), timeout=60)
        self.assertTrue(resp.succeeded)
        self.assertLess(time.monotonic() - t, 30)
        self.assertEqual(self.code(write, W(conditions=[Cn(key=b"k" * 65537, present=True)])),
                         C.INVALID_ARGUMENT)
        self.assertEqual(self.code(self.kv.Put, kv_pb2.PutRequest(key=b"after", value=b"x")), C.OK)

    def test_b_read_timestamps_in_the_future_and_below_the_horizon(self):
        first = self.kv.Put(kv_pb2.PutRequest(key=b"ts", value=b"1"), timeout=10).commit_ts
        got = self.kv.Get(kv_pb2.GetRequest(key=b"ts", read_ts=1 << 62), timeout=10)
        self.assertTrue(got.found)
        for i in range(40):  # past a memtable: a flush collects history
            self.kv.Put(kv_pb2.PutRequest(key=b"ts", value=b"v" * 40000), timeout=10)
        self.assertTrue(wait_until(lambda: self.counter("history_horizon") > first))
        self.assertEqual(self.code(self.kv.Get, kv_pb2.GetRequest(key=b"ts", read_ts=first)),
                         C.FAILED_PRECONDITION)

    def test_c_scan_bounds_and_0xff_prefixes(self):
        def scan(**req):
            try:
                return [kv for r in self.kv.Scan(kv_pb2.ScanRequest(**req), timeout=10) for kv in r.kvs], C.OK
            except grpc.RpcError as e:
                return None, e.code()
        self.assertEqual(scan(start=b"b", end=b"a")[1], C.INVALID_ARGUMENT)
        self.assertEqual(scan(prefix=b"a", start=b"a")[1], C.INVALID_ARGUMENT)
        self.kv.Put(kv_pb2.PutRequest(key=b"\xff\xff\x01", value=b"x"), timeout=10)
        kvs, code = scan(prefix=b"\xff\xff")
        self.assertEqual(code, C.OK)
        self.assertEqual([kv.key for kv in kvs], [b"\xff\xff\x01"])
        self.assertEqual(scan(prefix=b"\xff" * 70000)[1], C.OK)

    # ---- streams ----

    def txn(self):
        q = queue.Queue()
        return q, self.kv.Txn(iter(q.get, None), timeout=30)

    def test_d_txn_misuse(self):
        q, responses = self.txn()
        q.put(kv_pb2.TxnRequest(begin=kv_pb2.TxnBegin()))
        next(responses)
        q.put(kv_pb2.TxnRequest(begin=kv_pb2.TxnBegin()))
        with self.assertRaises(grpc.RpcError) as e:
            next(responses)
        self.assertEqual(e.exception.code(), C.INVALID_ARGUMENT)
        q.put(None)
        q, responses = self.txn()
        q.put(kv_pb2.TxnRequest())
        with self.assertRaises(grpc.RpcError) as e:
            next(responses)
        self.assertEqual(e.exception.code(), C.INVALID_ARGUMENT)
        q.put(None)
        # One transaction past its own size limit (half a memtable).
        q, responses = self.txn()
        q.put(kv_pb2.TxnRequest(put=kv_pb2.TxnPut(key=b"t0", value=b"v" * (700 << 10))))
        with self.assertRaises(grpc.RpcError) as e:
            next(responses)
        self.assertEqual(e.exception.code(), C.INVALID_ARGUMENT)
        q.put(None)
        # Past the buffer cap of all open transactions (2 MiB): four hold 2,000 KiB.
        held = []
        for t in range(4):
            q, responses = self.txn()
            for i in range(2):
                q.put(kv_pb2.TxnRequest(put=kv_pb2.TxnPut(key=b"t%d%d" % (t, i),
                                                          value=b"v" * (250 << 10))))
                next(responses)
            held.append((q, responses))  # dropping the call would cancel it
        q, responses = self.txn()
        q.put(kv_pb2.TxnRequest(put=kv_pb2.TxnPut(key=b"t5", value=b"v" * (250 << 10))))
        with self.assertRaises(grpc.RpcError) as e:
            next(responses)
        self.assertEqual(e.exception.code(), C.RESOURCE_EXHAUSTED)
        q.put(None)
        for h, _ in held:
            h.put(None)
        self.assertTrue(wait_until(lambda: self.counter("txns_open") == 0))
        self.assertEqual(self.counter("txn_buffered_bytes"), 0)

    def test_e_stream_limits_and_frozen_clients(self):
        for i in range(200):  # 4 MB to scan: more than flow control lets through
            self.kv.Put(kv_pb2.PutRequest(key=b"s%05d" % i, value=b"s" * 20000), timeout=10)
        frozen = []
        for _ in range(4):
            it = self.kv.Scan(kv_pb2.ScanRequest(prefix=b"s"), timeout=60)
            next(it)  # open, then never read again
            frozen.append(it)
        # (ScanBuffers checks --max_scans: here the idle timeout is too short
        # to be sure all four are still open when a fifth arrives.)
        # The idle timeout cancels the frozen ones and releases their snapshots.
        self.assertTrue(wait_until(lambda: self.counter("scans_open") == 0))
        self.assertTrue(wait_until(lambda: self.counter("live_snapshots") == 0))
        for it in frozen:
            it.cancel()
        # A transaction that goes silent is rolled back.
        q, responses = self.txn()
        q.put(kv_pb2.TxnRequest(put=kv_pb2.TxnPut(key=b"silent", value=b"v")))
        next(responses)
        self.assertTrue(wait_until(lambda: self.counter("txns_open") == 0))
        q.put(None)
        self.assertFalse(self.kv.Get(kv_pb2.GetRequest(key=b"silent"), timeout=10).found)

    def test_f_killed_clients(self):
        # A client process that opens a transaction and a scan, then dies.
        code = (
            "import sys, queue, grpc\n"
            "sys.path[:0] = %r\n"
            "from nokv.v1 import kv_pb2, kv_pb2_grpc\n"
            "kv = kv_pb2_grpc.KVStub(grpc.insecure_channel(%r))\n"
            "q = queue.Queue()\n"
            "r = kv.Txn(iter(q.get, None))\n"
            "q.put(kv_pb2.TxnRequest(put=kv_pb2.TxnPut(key=b'killed', value=b'v')))\n"
            "next(r)\n"
            "s = kv.Scan(kv_pb2.ScanRequest(prefix=b's'))\n"
            "next(s)\n"
            "print('ready', flush=True)\n"
            "import time; time.sleep(60)\n" % (sys.path, self.address))
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        self.assertEqual(p.stdout.readline().strip(), "ready")
        p.kill()
        p.wait()
        p.stdout.close()
        self.assertTrue(wait_until(lambda: self.counter("txns_open") == 0))
        self.assertTrue(wait_until(lambda: self.counter("scans_open") == 0))
        self.assertFalse(self.kv.Get(kv_pb2.GetRequest(key=b"killed"), timeout=10).found)

    def test_g_garbage_and_http1_on_the_port(self):
        for payload in (os.urandom(4096), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(512)):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            try:
                s.sendall(payload)
                try:
                    s.recv(1024)
                except (socket.timeout, ConnectionError):
                    pass
            finally:
                s.close()
        self.assertEqual(self.code(self.kv.Put, kv_pb2.PutRequest(key=b"alive", value=b"1")), C.OK)

    def test_g_malformed_scan_request(self):
        # Scan parses its own request (its responses are written in the wire
        # format by hand): bytes that are no ScanRequest are INVALID_ARGUMENT.
        scan = self.channel.unary_stream("/nokv.v1.KV/Scan")
        for payload in (b"\x0a\xff\xff\xff\xff\x0f", b"\x0a\x05ab", b"\xff" * 64):
            with self.assertRaises(grpc.RpcError) as e:
                list(scan(payload, timeout=10))
            self.assertEqual(e.exception.code(), C.INVALID_ARGUMENT, payload)
            self.assertIn("malformed ScanRequest", e.exception.details())
        # An empty message is a valid ScanRequest: the whole key space.
        got = list(scan(b"", timeout=10))
        self.assertGreater(len(got), 0)
        self.assertEqual(self.code(self.kv.Put, kv_pb2.PutRequest(key=b"alive", value=b"1")), C.OK)

    def test_h_resources_return_to_baseline(self):
        pid = self.proc.pid
        self.assertTrue(wait_until(lambda: fds(pid) <= self.base_fds + 8),
                        "descriptors %d, baseline %d" % (fds(pid), self.base_fds))
        rss = rss_kb(pid)
        print("descriptors: baseline %d, after %d; RSS: baseline %d KB, after %d KB"
              % (self.base_fds, fds(pid), self.base_rss, rss), flush=True)
        self.assertLess(rss, self.base_rss + 256 * 1024)

    def test_z_sigterm_with_streams_open(self):
        q, responses = self.txn()
        q.put(kv_pb2.TxnRequest(put=kv_pb2.TxnPut(key=b"open-at-stop", value=b"v")))
        next(responses)
        scan = self.kv.Scan(kv_pb2.ScanRequest(prefix=b"s"), timeout=30)
        next(scan)
        t = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=GRACE_S + 20)
        took = time.monotonic() - t
        self.assertEqual(rc, 0, self.proc.stderr.read())
        self.assertLess(took, GRACE_S + 5)
        q.put(None)
        scan.cancel()


class ScanBuffers(ServerCase):
    """What unread scans may hold: a scan's first message is small, and all
    scans together hold at most --scan_buffer_bytes in messages their clients
    have not taken; past it a scan waits, and resumes when room is made."""
    BUDGET = 64 << 10
    PAIR = 20000 + 6  # value and key bytes
    flags = ["--scan_first_chunk_bytes=4096", "--scan_chunk_bytes=%d" % (64 << 10),
             "--scan_buffer_bytes=%d" % BUDGET, "--scan_idle_timeout_ms=60000", "--max_scans=5"]

    def slow_channel(self):
        """A client with a 1 KB receive window: it takes almost nothing unread."""
        return grpc.insecure_channel(self.address, options=[("grpc.http2.lookahead_bytes", 1024),
                                                            ("grpc.http2.bdp_probe", 0)])

    def test_unread_scans_are_bounded_and_resume(self):
        for i in range(100):
            self.kv.Put(kv_pb2.PutRequest(key=b"s%05d" % i, value=b"s" * 20000), timeout=10)
        slow = self.slow_channel()
        kv = kv_pb2_grpc.KVStub(slow)
        scans = [kv.Scan(kv_pb2.ScanRequest(prefix=b"s"), timeout=60) for _ in range(5)]
        # Each holds one message of one pair (its first chunk is smaller than a
        # pair): three fit the budget, the other two wait.
        self.assertTrue(wait_until(lambda: self.counter("scans_waiting") == 2),
                        "waiting %d" % self.counter("scans_waiting"))
        self.assertEqual(self.counter("scans_open"), 5)
        self.assertEqual(self.counter("scan_buffered_bytes"), 3 * self.PAIR)
        # Waiting scans count against --max_scans.
        with self.assertRaises(grpc.RpcError) as e:
            next(self.kv.Scan(kv_pb2.ScanRequest(prefix=b"s"), timeout=10))
        self.assertEqual(e.exception.code(), C.RESOURCE_EXHAUSTED)
        # Reading them all to the end: the waiting ones resume, nothing is lost
        # or repeated, and the budget holds throughout.
        results = [None] * len(scans)

        def read(i):
            results[i] = [kv.key for r in scans[i] for kv in r.kvs]

        readers = [threading.Thread(target=read, args=(i,)) for i in range(len(scans))]
        for t in readers:
            t.start()
        while any(t.is_alive() for t in readers):
            self.assertLessEqual(self.counter("scan_buffered_bytes"), self.BUDGET)
            time.sleep(0.01)  # sampling interval, not synchronisation
        for t in readers:
            t.join()
        for keys in results:
            self.assertEqual(keys, [b"s%05d" % i for i in range(100)])
        self.assertTrue(wait_until(lambda: self.counter("scan_buffered_bytes") == 0))
        self.assertEqual(self.counter("scans_waiting"), 0)
        self.assertTrue(wait_until(lambda: self.counter("scans_open") == 0))
        slow.close()

    def test_messages_start_small_and_grow_as_the_client_reads(self):
        for i in range(2000):
            self.kv.Put(kv_pb2.PutRequest(key=b"g%05d" % i, value=b"g" * 100), timeout=10)
        slow = self.slow_channel()
        scan = kv_pb2_grpc.KVStub(slow).Scan(kv_pb2.ScanRequest(prefix=b"g"), timeout=60)
        # Unread, the scan holds one first-sized message.
        self.assertTrue(wait_until(lambda: self.counter("scan_buffered_bytes") == 4096))
        sizes = [sum(len(kv.key) + len(kv.value) for kv in r.kvs) for r in scan]
        self.assertEqual(sum(sizes), 2000 * 106)
        self.assertLessEqual(sizes[0], 4096)
        self.assertTrue(all(s <= 64 << 10 for s in sizes))
        # Doubling: 4, 8, 16, 32, then 64 KiB messages (less what a pair leaves).
        for i, s in enumerate(sizes[:-1]):
            self.assertGreater(s, min(4096 << i, 64 << 10) - 106, sizes)
        slow.close()

    def test_waiting_scans_end_when_cancelled(self):
        for i in range(100):
            self.kv.Put(kv_pb2.PutRequest(key=b"c%05d" % i, value=b"c" * 20000), timeout=10)
        slow = self.slow_channel()
        kv = kv_pb2_grpc.KVStub(slow)
        scans = [kv.Scan(kv_pb2.ScanRequest(prefix=b"c"), timeout=60) for _ in range(5)]
        self.assertTrue(wait_until(lambda: self.counter("scans_waiting") == 2))
        for s in scans:
            s.cancel()
        self.assertTrue(wait_until(lambda: self.counter("scans_open") == 0))
        self.assertEqual(self.counter("scans_waiting"), 0)
        self.assertEqual(self.counter("scan_buffered_bytes"), 0)
        self.assertEqual(self.counter("live_snapshots"), 0)
        slow.close()


if __name__ == "__main__":
    SERVER = sys.argv.pop(1)
    unittest.main(verbosity=2)
