"""A 3-node NoKV-C Raft group of real processes on loopback, through failures.

Writes through any node; the leader SIGKILLed under load (a new leader within
seconds, every acknowledged write on every replica); the leader SIGSTOPped (a
partition from its side) and resumed (it steps down, and nothing it accepted
alone is acknowledged); a rolling restart under load, invisible to a retrying
client; and a linearizability check of reads, writes and compare-and-sets on a
few registers through random nodes while nodes are killed, paused and
restarted (its length from NOKV_LINEAR_SECONDS, short by default).

Usage: cluster_test.py NOKV_SERVER_BINARY NOKV_CLI
"""

import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import grpc

from nokv.v1 import kv_pb2
from cluster import Client, Cluster, Writers, wait_until
from linearizability import Op, check_register
from txn_client import Txn

BINARY = None
CLI = None


def nokv(*args):
    """Runs the nokv CLI; its exit status and output."""
    p = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=180)
    return p.returncode, p.stdout + p.stderr


def refused(e):
    """Whether a failed call was refused before anything was proposed."""
    return (isinstance(e, grpc.RpcError) and e.code() == grpc.StatusCode.UNAVAILABLE and
            ("does not lead" in e.details() or "shutting down" in e.details()))


def txn_transfer(client, src, dst, amount):
    """Moves amount from src to dst in one transaction, through a random node
    and on to the leader it names. Whether it committed (False: a conflict);
    raises on any other failure."""
    node = client.node()
    for _ in range(2):
        txn = Txn(node.stub, timeout=2)
        try:
            a, b = int(txn.get(src)), int(txn.get(dst))
            txn.put(src, b"%d" % (a - amount))
            txn.put(dst, b"%d" % (b + amount))
            txn.commit()
            return True
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.ABORTED:
                return False
            leader = dict(e.trailing_metadata() or ()).get("nokv-leader")
            node = next((m for m in client.cluster.nodes
                         if m.address == leader and m.proc is not None), None)
            if e.code() != grpc.StatusCode.UNAVAILABLE or node is None:
                raise
        finally:
            txn.close()
    raise RuntimeError("the leader a follower named did not lead")


def serializable_get(node, key):
    return node.stub.Get(kv_pb2.GetRequest(key=key, serializable=True), timeout=5)


class ClusterTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="nokv-cluster-")
        self.cluster = Cluster(BINARY, self.tmp.name)

    def tearDown(self):
        self.cluster.close()
        result = self._outcome.result
        if any(t is self for t, _ in result.failures + result.errors):
            # The servers' logs, for whoever reads the failure (bazel keeps
            # TEST_UNDECLARED_OUTPUTS_DIR).
            out = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR")
            for name in sorted(os.listdir(self.tmp.name)) if out else ():
                if name.endswith(".log"):
                    shutil.copy(os.path.join(self.tmp.name, name),
                                os.path.join(out, "%s-%s" % (self._testMethodName, name)))
        self.tmp.cleanup()

    def assert_everywhere(self, acked):
        """Every acknowledged key is on every replica, at its commit_ts."""
        if not acked:
            return
        self.cluster.wait_applied(max(acked.values()))
        for m in self.cluster.nodes:
            for key, ts in acked.items():
                r = serializable_get(m, key)
                self.assertTrue(r.found, "node %d lost %r" % (m.id, key))
                self.assertEqual(r.value, b"v" + key)
                self.assertEqual(r.commit_ts, ts)

    def test_a_writes_and_reads_through_any_node(self):
        leader = self.cluster.leader()
        acked = {}
        for m in self.cluster.nodes:
            for i in range(10):
                key = b"n%d-%d" % (m.id, i)
                acked[key] = m.stub.Put(kv_pb2.PutRequest(key=key, value=b"v" + key),
                                        timeout=5).commit_ts
        self.assertEqual(len(set(acked.values())), len(acked))
        # A Watch on a follower sees the commits it applies, in order, each only
        # once the group committed it.
        follower = next(m for m in self.cluster.nodes if m is not leader)
        watch = follower.stub.Watch(kv_pb2.WatchRequest(prefix=b"w/"), timeout=10)
        self.assertTrue(next(watch).created)
        wts = [leader.stub.Put(kv_pb2.PutRequest(key=b"w/%d" % i, value=b"v"), timeout=5).commit_ts
               for i in range(3)]
        seen = []
        while len(seen) < 3:
            seen += [g.commit_ts for g in next(watch).groups]
        self.assertEqual(seen, wts)
        watch.cancel()
        # A Scan through a follower is piped to the leader, chunk by chunk (small
        # chunks: several); one forwarded already is not forwarded again: the
        # follower names the leader in trailing metadata. A serializable one
        # it serves itself.
        got = list(follower.stub.Scan(kv_pb2.ScanRequest(prefix=b"n"), timeout=5))
        self.assertEqual(sum(len(r.kvs) for r in got), len(acked))
        for i in range(12):
            leader.stub.Put(kv_pb2.PutRequest(key=b"big/%d" % i, value=b"b" * 1000), timeout=5)
        got = list(follower.stub.Scan(kv_pb2.ScanRequest(prefix=b"big/"), timeout=5))
        self.assertGreater(len(got), 1)  # the first chunk is 4 KiB
        self.assertEqual([kv.key for r in got for kv in r.kvs],
                         sorted(b"big/%d" % i for i in range(12)))
        with self.assertRaises(grpc.RpcError) as e:
            list(follower.stub.Scan(kv_pb2.ScanRequest(prefix=b"n"), timeout=5,
                                    metadata=[("nokv-forwarded", "1")]))
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(dict(e.exception.trailing_metadata())["nokv-leader"], leader.address)
        self.cluster.wait_applied(max(acked.values()), nodes=[follower])
        got = list(follower.stub.Scan(kv_pb2.ScanRequest(prefix=b"n", serializable=True),
                                      timeout=5))
        self.assertEqual(sum(len(r.kvs) for r in got), len(acked))
        # A linearizable Get through a follower (forwarded) sees the newest write.
        last = max(acked, key=acked.get)
        r = follower.stub.Get(kv_pb2.GetRequest(key=last), timeout=5)
        self.assertEqual((r.found, r.commit_ts), (True, acked[last]))
        self.assert_everywhere(acked)
        # A conditional write is judged once, in the log, and answered with
        # what its failed condition found.
        k = b"n1-0"
        ok = follower.stub.Write(kv_pb2.WriteRequest(
            conditions=[kv_pb2.Condition(key=k, commit_ts_equals=acked[k])],
            mutations=[kv_pb2.Mutation(key=k, put=b"cas")]), timeout=5)
        self.assertTrue(ok.succeeded)
        bad = leader.stub.Write(kv_pb2.WriteRequest(
            conditions=[kv_pb2.Condition(key=k, commit_ts_equals=acked[k])],
            mutations=[kv_pb2.Mutation(key=k, put=b"lost")]), timeout=5)
        self.assertFalse(bad.succeeded)
        self.assertEqual((bad.found, bad.found_commit_ts), (True, ok.commit_ts))
        # Stats: role, term, indexes, and each member's match index on the leader.
        c = leader.stats().cluster
        self.assertEqual(c.state, "leader")
        self.assertEqual(c.leader_address, leader.address)
        self.assertEqual(len(c.members), 3)
        self.assertTrue(all(mm.match_index > 0 for mm in c.members))
        self.assertGreaterEqual(c.applied_index, c.commit_index - 1)
        # The same, as Prometheus metrics.
        pm = leader.metrics()
        self.assertEqual(pm['nokv_raft_state{state="leader"}'], 1)
        self.assertEqual(pm["nokv_raft_members"], 3)
        self.assertGreater(pm["nokv_raft_applied_index"], 0)
        self.assertTrue(all(pm['nokv_raft_match_index{member="%d"}' % mm.id] > 0
                            for mm in c.members))
        self.assertEqual(follower.metrics()['nokv_raft_state{state="follower"}'], 1)
        # Transactions: begun at a read point on the leader (a follower pipes
        # its stream there), committed through the log; of two reading the
        # same key, the second to commit conflicts.
        t1, t2 = Txn(leader.stub, timeout=5), Txn(follower.stub, timeout=5)
        self.assertEqual(t1.get(k), b"cas")
        self.assertEqual(t2.get(k), b"cas")
        t1.put(k, b"t1")
        t1.put(b"t/new", b"t1")
        t2.put(k, b"t2")
        t1_ts = t1.commit()
        with self.assertRaises(grpc.RpcError) as e:
            t2.commit()
        self.assertEqual(e.exception.code(), grpc.StatusCode.ABORTED)
        self.assertIn("conflict", e.exception.details())
        self.cluster.wait_applied(t1_ts)
        for m in self.cluster.nodes:
            for key in (k, b"t/new"):
                r = serializable_get(m, key)
                self.assertEqual((r.value, r.commit_ts), (b"t1", t1_ts), "node %d" % m.id)
        # A transaction forwarded already is not forwarded again: the follower
        # names the leader.
        t3 = Txn(follower.stub, timeout=5, metadata=[("nokv-forwarded", "1")])
        with self.assertRaises(grpc.RpcError) as e:
            t3.get(k)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(dict(e.exception.trailing_metadata())["nokv-leader"], leader.address)
        t3.close()
        t4 = Txn(follower.stub, timeout=5)
        t4.begin(read_only=True, serializable=True)
        self.assertEqual(t4.get(k), b"t1")
        self.assertGreaterEqual(t4.commit(), t1_ts)  # its read_ts

    def test_b_leader_killed_under_load(self):
        leader = self.cluster.leader()
        writers = Writers(self.cluster)
        wait_until(lambda: writers.count() >= 200, what="writes before the kill")
        before = writers.count()
        killed_at = time.monotonic()
        leader.kill()
        others = [m for m in self.cluster.nodes if m is not leader]
        new_leader = self.cluster.leader(among=others)
        wait_until(lambda: writers.count() > before + 50, what="writes after the kill")
        failover = time.monotonic() - killed_at
        print("failover: %.2f s to %d more acknowledged writes; new leader node %d"
              % (failover, writers.count() - before, new_leader.id), file=sys.stderr)
        self.assertLess(failover, 10.0)
        leader.start()  # back on its own log and engine
        acked = writers.stop()
        self.assertEqual(writers.errors, [])
        self.assert_everywhere(acked)

    def test_c_paused_leader_steps_down(self):
        old = self.cluster.leader()
        old.stub.Put(kv_pb2.PutRequest(key=b"lease", value=b"before"), timeout=5)
        old.signal(signal.SIGSTOP)
        others = [m for m in self.cluster.nodes if m is not old]
        new = self.cluster.leader(among=others)
        client = Client(self.cluster)
        acked = {}
        new.stub.Put(kv_pb2.PutRequest(key=b"lease", value=b"after"), timeout=5)
        for i in range(20):
            key = b"p-%d" % i
            acked[key] = new.stub.Put(kv_pb2.PutRequest(key=key, value=b"v" + key),
                                      timeout=5).commit_ts
        # Reads sent to the paused leader after "after" was acknowledged (so
        # they must see it) wait in its sockets; it wakes up with them, its
        # read lease long over (docs/replication.md).
        reads = []

        def read():
            try:
                r = old.stub.Get(kv_pb2.GetRequest(key=b"lease"), timeout=20)
                reads.append(r.value)
            except grpc.RpcError as e:
                reads.append(e.code())
        readers = [threading.Thread(target=read) for _ in range(8)]
        for t in readers:
            t.start()
        # Time for the requests to reach its sockets. (A read that arrives
        # after it resumes is held to the same rule: the wait only makes the
        # case of reads waiting at a stale leader likely.)
        time.sleep(0.3)
        old.signal(signal.SIGCONT)
        for t in readers:
            t.join()
        self.assertNotIn(b"before", reads, "a stale read after the write that replaced it")
        self.assertTrue(all(r == b"after" or r == grpc.StatusCode.UNAVAILABLE for r in reads),
                        reads)
        # Straight to the old leader, as it wakes up believing it leads: what
        # it acknowledges must be committed by the group, and nothing it
        # accepted alone may be.
        for i in range(10):
            key = b"q-%d" % i
            try:
                r = old.stub.Put(kv_pb2.PutRequest(key=key, value=b"v" + key), timeout=5)
                acked[key] = r.commit_ts
            except grpc.RpcError as e:
                self.assertIn(e.code(), (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN))
        wait_until(lambda: old.stats().cluster.state == "follower", what="the old leader to step down")
        self.assertEqual(old.stats().cluster.leader_id, new.id)
        self.assertGreater(old.stats().cluster.term, 0)
        del client
        self.assert_everywhere(acked)

    def test_c_txn_commit_of_unknown_outcome(self):
        """A transaction whose commit was proposed by a leader that then lost its
        majority is answered UNKNOWN (never "rolled back"), and a read settles
        it: the entry committed later or never, whole either way."""
        leader = self.cluster.leader()
        others = [m for m in self.cluster.nodes if m is not leader]
        txn = Txn(leader.stub, timeout=20)
        try:
            txn.put(b"unknown-a", b"1")
            txn.put(b"unknown-b", b"1")
            for m in others:  # the leader can no longer commit anything
                m.signal(signal.SIGSTOP)
            for m in others:
                wait_until(m.stopped, what="node %d to stop" % m.id)
            with self.assertRaises(grpc.RpcError) as raised:
                txn.commit()
        finally:
            for m in others:
                m.signal(signal.SIGCONT)
            txn.close()
        self.assertEqual(raised.exception.code(), grpc.StatusCode.UNKNOWN,
                         raised.exception.details())
        self.assertIn("may or may not have been committed", raised.exception.details())
        self.cluster.leader()
        client = Client(self.cluster)
        a = client.call("Get", kv_pb2.GetRequest(key=b"unknown-a"))
        b = client.call("Get", kv_pb2.GetRequest(key=b"unknown-b"))
        self.assertEqual(a.found, b.found)  # all of it or nothing
        if a.found:
            self.assertEqual(a.commit_ts, b.commit_ts)

    def test_d_rolling_restart_under_load(self):
        self.cluster.leader()
        writers = Writers(self.cluster)
        for m in self.cluster.nodes:
            n = writers.count()
            self.assertEqual(m.stop(), 0)
            m.start()
            wait_until(lambda: writers.count() >= n + 30, what="writes after restarting %d" % m.id)
            self.cluster.leader()
        acked = writers.stop()
        self.assertEqual(writers.errors, [])  # a retrying client saw no error
        self.assert_everywhere(acked)

    def test_h_bank_invariant_through_failures(self):
        # Transfers between accounts, half of them transactions (read both
        # balances, write both) and half Writes conditioned on both balances'
        # commit timestamps, through random nodes while the leader is killed
        # and paused: every linearizable Scan, and every replica at the end,
        # sums to the same total.
        seconds = float(os.environ.get("NOKV_BANK_SECONDS", "4"))
        accounts = [b"acct/%d" % i for i in range(5)]
        total = 100 * len(accounts)
        client = Client(self.cluster)
        for a in accounts:
            client.call("Put", kv_pb2.PutRequest(key=a, value=b"100"))
        stop = threading.Event()
        stats = {"transfers": 0, "refused": 0, "txns": 0, "conflicts": 0, "scans": 0,
                 "unknown": 0}
        lock = threading.Lock()
        bad = []
        failures = {}  # failed calls by status

        def transfer(i):
            c = Client(self.cluster, seed=200 + i)
            rng = random.Random(i)
            while not stop.is_set():
                src, dst = rng.sample(accounts, 2)
                try:
                    if rng.random() < 0.5:
                        ok = txn_transfer(c, src, dst, rng.randint(1, 20))
                        with lock:
                            stats["txns" if ok else "conflicts"] += 1
                        continue
                    a = c.call_once("Get", kv_pb2.GetRequest(key=src))
                    b = c.call_once("Get", kv_pb2.GetRequest(key=dst))
                    amount = rng.randint(1, 20)
                    r = c.call_once("Write", kv_pb2.WriteRequest(
                        conditions=[kv_pb2.Condition(key=src, commit_ts_equals=a.commit_ts),
                                    kv_pb2.Condition(key=dst, commit_ts_equals=b.commit_ts)],
                        mutations=[
                            kv_pb2.Mutation(key=src, put=b"%d" % (int(a.value) - amount)),
                            kv_pb2.Mutation(key=dst, put=b"%d" % (int(b.value) + amount))]))
                    with lock:
                        stats["transfers" if r.succeeded else "refused"] += 1
                except Exception as e:  # pylint: disable=broad-except
                    code = e.code().name if isinstance(e, grpc.RpcError) else type(e).__name__
                    with lock:
                        stats["unknown"] += 1
                        failures[code] = failures.get(code, 0) + 1
                    time.sleep(0.02)

        def audit():
            c = Client(self.cluster, seed=300)
            while not stop.is_set():
                try:
                    got = list(c.call_once("Scan", kv_pb2.ScanRequest(prefix=b"acct/")))
                except Exception:  # pylint: disable=broad-except
                    time.sleep(0.02)
                    continue
                pairs = [kv for r in got for kv in r.kvs]
                s = sum(int(kv.value) for kv in pairs)
                with lock:
                    stats["scans"] += 1
                    if len(pairs) != len(accounts) or s != total:
                        bad.append((len(pairs), s))

        threads = [threading.Thread(target=transfer, args=(i,)) for i in range(3)]
        threads += [threading.Thread(target=audit),
                    threading.Thread(target=self.cluster.nemesis,
                                     args=(stop, 11, 0.8, ("kill", "pause"), 0.5, 0.8))]
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join(timeout=120)
        print("bank: %(txns)d transactions, %(conflicts)d conflicted; %(transfers)d conditional "
              "writes, %(refused)d refused; %(unknown)d failed calls; %(scans)d audits" % stats,
              sorted(failures.items()), file=sys.stderr)
        self.assertEqual(bad, [])
        self.assertGreater(stats["transfers"], 20)
        self.assertGreater(stats["txns"], 20)
        self.assertGreater(stats["scans"], 5)
        last = client.call("Get", kv_pb2.GetRequest(key=accounts[0])).read_ts
        self.cluster.wait_applied(last)
        for m in self.cluster.nodes:
            balances = [int(serializable_get(m, a).value) for a in accounts]
            self.assertEqual(sum(balances), total, "node %d: %s" % (m.id, balances))

    def test_e_wiped_follower_replaced_and_leading(self):
        leader = self.cluster.leader()
        writers = Writers(self.cluster)
        wait_until(lambda: writers.count() >= 300, what="writes")
        # A follower's disk is lost. Restarted with the first members' list, it
        # would bootstrap again, having forgotten its votes and log: refused,
        # since the leader has seen it (repl/identity.h).
        gone = next(m for m in self.cluster.nodes if m is not leader)
        gone.kill()
        shutil.rmtree(gone.data_dir)
        with self.assertRaisesRegex(RuntimeError, "its state was lost"):
            gone.start()
        gone.proc.stdout.close()
        # It is removed, and a new node on a fresh directory is added in its
        # place (through any node: a follower forwards the change), catches up
        # and votes.
        rc, out = nokv("cluster", "remove", "--id", str(gone.id), "--addr", leader.address)
        self.assertEqual(rc, 0, out)
        self.assertNotIn("\n  %-6d " % gone.id, out)
        fresh = self.cluster.add_node()
        other = next(m for m in self.cluster.nodes if m not in (leader, gone, fresh))
        rc, out = nokv("cluster", "add", "--id", str(fresh.id), "--raft_address",
                       fresh.raft_address, "--addr", other.address)
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"\n  %d\s+%s\s+voter" % (fresh.id, fresh.raft_address))
        # Adding it again, or a malformed change, is refused plainly.
        rc, out = nokv("cluster", "add", "--id", str(fresh.id), "--raft_address",
                       fresh.raft_address, "--addr", leader.address)
        self.assertEqual(rc, 1, out)
        self.assertIn("(3)", out)  # INVALID_ARGUMENT: already a member
        acked = writers.stop()
        self.assertEqual(writers.errors, [])
        self.cluster.nodes.remove(gone)
        self.assert_everywhere(acked)
        # Leadership moves to the new node.
        rc, out = nokv("cluster", "transfer", "--id", str(fresh.id), "--addr", leader.address)
        self.assertEqual(rc, 0, out)
        self.assertIs(self.cluster.leader(), fresh)
        rc, out = nokv("cluster", "status", "--addr", fresh.address)
        self.assertEqual(rc, 0, out)
        self.assertIn("node %d: leader" % fresh.id, out)
        self.assertEqual(out.count(" voter"), 3, out)

    def test_i_lost_majority_recovered_from_a_survivor(self):
        leader = self.cluster.leader()
        writers = Writers(self.cluster)
        wait_until(lambda: writers.count() >= 100, what="writes")
        acked = writers.stop()
        self.cluster.wait_applied(max(acked.values()))
        # Two of three lost for good, with their disks. The survivor alone
        # cannot commit; made the only voter, it leads with everything.
        survivor = next(m for m in self.cluster.nodes if m is not leader)
        for m in self.cluster.nodes:
            m.kill()
        lost = [m for m in self.cluster.nodes if m is not survivor]
        for m in lost:
            shutil.rmtree(m.data_dir)
        p = subprocess.run(
            [self.cluster.binary, "--data_dir=" + survivor.data_dir,
             "--node_id=%d" % survivor.id, "--raft_listen=" + survivor.raft_address,
             "--recover_as_sole_voter"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("is now the only voter", p.stdout)
        survivor.start()
        self.assertIs(self.cluster.leader(), survivor)
        r = survivor.stub.Put(kv_pb2.PutRequest(key=b"after", value=b"recovery"), timeout=5)
        # A node on an empty directory joins it.
        fresh = self.cluster.add_node()
        for m in lost:
            self.cluster.nodes.remove(m)
        rc, out = nokv("cluster", "add", "--id", str(fresh.id), "--raft_address",
                       fresh.raft_address, "--addr", survivor.address)
        self.assertEqual(rc, 0, out)
        self.assert_everywhere(acked)
        self.cluster.wait_applied(r.commit_ts)
        self.assertEqual(serializable_get(fresh, b"after").value, b"recovery")

    def test_g_replica_behind_the_compacted_log_fetches_the_state(self):
        leader = self.cluster.leader()
        behind = next(m for m in self.cluster.nodes if m is not leader)
        behind.kill()
        writers = Writers(self.cluster)
        wait_until(lambda: writers.count() >= 600, what="writes while a replica is down")
        # (Writes that arrive together share a log entry: count the log.)
        wait_until(lambda: leader.stats().cluster.snapshot_index > 300,
                   what="snapshots past the replica's log")
        # The leader kept only the log since its last snapshot: the replica
        # fetches the state (in checksummed chunks), restarts on it, and
        # catches up from the log, under load.
        behind.start()
        acked = writers.stop()
        self.assertEqual(writers.errors, [])
        self.assert_everywhere(acked)
        log = behind.log_text()
        self.assertIn("fetched node %d's state" % leader.id, log)
        self.assertIn("installed the state fetched from the cluster", log)
        self.assertEqual(behind.stats().cluster.state, "follower")

    def test_f_linearizable_through_failures(self):
        seconds = float(os.environ.get("NOKV_LINEAR_SECONDS", "6"))
        # 16 registers: the search is exponential in the writes of unknown
        # outcome pending at once on one register.
        keys = [b"r%d" % i for i in range(16)]
        history = {k: [] for k in keys}
        lock = threading.Lock()
        stop = threading.Event()
        t0 = time.monotonic()

        def clock():
            return time.monotonic() - t0

        def worker(i):
            client = Client(self.cluster, seed=100 + i)
            rng = random.Random(i)
            seq = 0
            while not stop.is_set():
                key = rng.choice(keys)
                what = rng.random()
                start = clock()
                try:
                    if what < 0.45:
                        r = client.call_once("Get", kv_pb2.GetRequest(key=key))
                        op = Op(start, clock(), "read", None, r.value if r.found else None)
                    elif what < 0.75:
                        seq += 1
                        v = b"%d-%d" % (i, seq)
                        client.call_once("Put", kv_pb2.PutRequest(key=key, value=v))
                        op = Op(start, clock(), "write", v, None)
                    else:
                        seq += 1
                        with lock:  # expect a value that was written, or absence
                            seen = [o.args for o in history[key] if o.kind == "write"]
                        expected = rng.choice(seen) if seen else None
                        v = b"%d-%d" % (i, seq)
                        cond = (kv_pb2.Condition(key=key, absent=True) if expected is None
                                else kv_pb2.Condition(key=key, value_equals=expected))
                        r = client.call_once("Write", kv_pb2.WriteRequest(
                            conditions=[cond], mutations=[kv_pb2.Mutation(key=key, put=v)]))
                        op = Op(start, clock(), "cas", (expected, v), r.succeeded)
                except Exception as e:  # pylint: disable=broad-except
                    # (an RPC error, or a node's channel closed by a restart)
                    # A failed read had no effect, nor had a write refused
                    # before it was proposed; any other failed write may have
                    # been committed, or not: its outcome is unknown.
                    time.sleep(0.02)
                    if what < 0.45 or refused(e):
                        continue
                    if what < 0.75:
                        op = Op(start, math.inf, "write", v, None)
                    else:
                        op = Op(start, math.inf, "cas", (expected, v), None)
                with lock:
                    history[key].append(op)
                time.sleep(0.01)  # a history the checker can search

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        threads.append(threading.Thread(
            target=self.cluster.nemesis, args=(stop, 7, 1.0, ("kill", "pause", "restart"), 0.8, 1.2)))
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join(timeout=120)
        total = sum(len(ops) for ops in history.values())
        unknown = sum(1 for ops in history.values() for o in ops if o.complete == math.inf)
        ok = sum(1 for ops in history.values() for o in ops if o.kind == "read")
        print("linearizability: %d operations (%d reads, %d of unknown outcome) on %d registers"
              % (total, ok, unknown, len(keys)), file=sys.stderr)
        self.assertGreater(total - unknown, 50)
        for key, ops in history.items():
            try:
                ok = check_register(ops)
            except RuntimeError:
                ok = None
            if not ok:
                # The register's history, for a closer look.
                out = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR", tempfile.gettempdir())
                path = os.path.join(out, "history-%s.txt" % key.decode())
                with open(path, "w") as f:
                    for o in sorted(ops, key=lambda o: o.invoke):
                        f.write("%.6f %.6f %s %r %r\n" % (o.invoke, o.complete, o.kind, o.args,
                                                           o.result))
                print("register %r: history in %s" % (key, path), file=sys.stderr)
            self.assertIsNotNone(ok, "register %r: the search passed its budget" % key)
            self.assertTrue(ok, "register %r: history not linearizable" % key)


class CheckerTest(unittest.TestCase):
    """The checker itself, on histories known to be (or not be) linearizable."""

    def test_finds_a_stale_read(self):
        # The checker itself: a read of an overwritten value after the
        # overwrite completed is not linearizable; concurrent, it is.
        w1 = Op(0, 1, "write", b"a", None)
        w2 = Op(2, 3, "write", b"b", None)
        self.assertFalse(check_register([w1, w2, Op(4, 5, "read", None, b"a")]))
        self.assertTrue(check_register([w1, w2, Op(2.5, 5, "read", None, b"a")]))
        # An unknown-outcome write may or may not have happened.
        u = Op(0, math.inf, "write", b"x", None)
        self.assertTrue(check_register([u, Op(1, 2, "read", None, None)]))
        self.assertTrue(check_register([u, Op(1, 2, "read", None, b"x")]))
        self.assertFalse(check_register([Op(1, 2, "read", None, b"x")]))
        # A failed CAS saw another value; a successful one, its expected value.
        self.assertFalse(check_register([w1, Op(2, 3, "cas", (b"a", b"c"), False)]))
        self.assertTrue(check_register([w1, Op(2, 3, "cas", (b"a", b"c"), True),
                                        Op(4, 5, "read", None, b"c")]))


if __name__ == "__main__":
    BINARY = sys.argv.pop(1)
    CLI = sys.argv.pop(1)
    unittest.main(verbosity=2)
