"""A NoKV-C Raft group of real nokv_server processes on loopback, for tests.

Cluster(binary, root, n) starts n nodes (free ports for gRPC and Raft, data in
root/nI) that bootstrap one group. Each node can be killed (SIGKILL), paused
(SIGSTOP) and resumed, stopped (SIGTERM) and started again on its data.
Client(cluster) calls any node and retries what a failover makes fail.
"""

import fcntl
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc

from nokv.v1 import kv_pb2, kv_pb2_grpc


_CLAIMS = []  # lock files of the ports this process claimed, held until it exits
PORT_LOCKS = "/tmp/nokv-test-ports"  # shared by the tests running at once


def claim_port(port):
    """Whether port is this process's against every other test that claims
    ports so (an flock on PORT_LOCKS/PORT, released when the process exits):
    two tests running at once never pick the same one between checking that
    it is free and binding it."""
    try:
        os.makedirs(PORT_LOCKS, exist_ok=True)
        f = open(os.path.join(PORT_LOCKS, str(port)), "a")
    except OSError:
        return True  # no shared directory: the bind check alone
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return False
    _CLAIMS.append(f)
    return True


def free_port():
    """A port free on loopback for TCP and UDP (a node's Raft port carries
    both), drawn below Linux's ephemeral range: a port the kernel handed out
    could be taken by an outgoing connection before the server binds it."""
    rng = random.Random()
    while True:
        port = rng.randrange(20000, 32000)
        if not claim_port(port):
            continue
        try:
            with socket.socket() as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                t.bind(("127.0.0.1", port))
                u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue


def wait_until(cond, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


class Node:
    def __init__(self, cluster, node_id, join=False):
        self.cluster = cluster
        self.id = node_id
        self.join = join  # starts with no peers, to be added to the running group
        self.port = free_port()
        self.raft_port = free_port()
        self.metrics_port = free_port()
        self.address = "127.0.0.1:%d" % self.port
        self.raft_address = "127.0.0.1:%d" % self.raft_port
        self.data_dir = os.path.join(cluster.root, "n%d" % node_id)
        self.proc = None
        self.log = None
        self.channel = None
        self.stub = None

    def start(self):
        self.log = open(self.data_dir + ".log", "a")
        self.proc = subprocess.Popen(
            [self.cluster.binary, "--listen=" + self.address, "--data_dir=" + self.data_dir,
             "--node_id=%d" % self.id, "--raft_listen=" + self.raft_address,
             "--join" if self.join else "--peers=" + self.cluster.peers,
             "--metrics_listen=127.0.0.1:%d" % self.metrics_port, *self.cluster.flags],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        if "metrics on" in line:  # printed first
            line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.wait()
            self.log.close()
            raise RuntimeError("node %d did not start: %r %s" % (self.id, line, self.log_text()))
        # Reconnects soon after a restart (gRPC's default backoff grows to 2 min).
        self.channel = grpc.insecure_channel(self.address, options=[
            ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 500)])
        self.stub = kv_pb2_grpc.KVStub(self.channel)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stopped(self):
        """Whether every thread of the process has stopped (SIGSTOP takes
        effect thread by thread, after kill() returns)."""
        try:
            tasks = os.listdir("/proc/%d/task" % self.proc.pid)
            for t in tasks:
                with open("/proc/%d/task/%s/stat" % (self.proc.pid, t)) as f:
                    # The state follows the command name, which is in parentheses.
                    if f.read().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
                        return False
            return True
        except OSError:
            return False

    def signal(self, sig):
        self.proc.send_signal(sig)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._closed()

    def stop(self):
        # A server's graceful stop waits (up to its grace) for clients that
        # made a call to hang up: this one does first.
        self.channel.close()
        self.proc.send_signal(signal.SIGCONT)
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=60)
        self._closed()
        return rc

    def _closed(self):
        self.proc.stdout.close()
        self.log.close()
        self.channel.close()  # (again: no harm)
        self.proc = None

    def metrics(self):
        """The Prometheus page, as {name{labels}: value}."""
        import urllib.request
        page = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port,
                                      timeout=5).read().decode()
        return {l.rsplit(" ", 1)[0]: float(l.rsplit(" ", 1)[1])
                for l in page.splitlines() if l and not l.startswith("#")}

    def log_text(self):
        with open(self.data_dir + ".log") as f:
            return f.read()

    def stats(self, timeout=2.0):
        return self.stub.Stats(kv_pb2.StatsRequest(), timeout=timeout)


class Cluster:
    def __init__(self, binary, root, n=3, flags=()):
        self.binary = binary
        self.root = root
        # Snapshots every 128 entries, keeping 32: a replica down for a few
        # hundred writes fetches the state instead of replaying the log.
        self.flags = ["--election_timeout_ms=500", "--heartbeat_ms=50",
                      "--shutdown_grace_seconds=2", "--snapshot_entries=128",
                      "--snapshot_trailing=32", *flags]
        self.nodes = [Node(self, i + 1) for i in range(n)]
        self.peers = ",".join("%d=%s" % (m.id, m.raft_address) for m in self.nodes)
        for m in self.nodes:
            m.start()

    def add_node(self):
        """A new node, started with --join (not yet a member)."""
        m = Node(self, len(self.nodes) + 1, join=True)
        self.nodes.append(m)
        m.start()
        return m

    def nemesis(self, stop, seed, period, actions, down, paused):
        """Until stop is set, every period seconds: SIGKILL the leader and start
        it again after down seconds, SIGSTOP it for paused seconds, or restart
        (SIGTERM) a follower; actions taken in turn."""
        rng = random.Random(seed)
        turn = 0
        while not stop.is_set():
            time.sleep(period)
            try:
                leader = self.leader(timeout=10)
            except AssertionError:
                continue
            action = actions[turn % len(actions)]
            turn += 1
            print("nemesis: %s (leader node %d)" % (action, leader.id), file=sys.stderr)
            if action == "kill":
                leader.kill()
                time.sleep(down)
                leader.start()
            elif action == "pause":
                leader.signal(signal.SIGSTOP)
                time.sleep(paused)
                leader.signal(signal.SIGCONT)
            else:
                m = rng.choice([m for m in self.nodes if m is not leader and m.running()])
                m.stop()
                m.start()

    def close(self):
        for m in self.nodes:
            if m.running():
                m.stop()

    def leader(self, timeout=30.0, among=None):
        """The node every running node (or those in among) agrees leads."""
        def agreed():
            nodes = among if among is not None else [m for m in self.nodes if m.running()]
            ids = set()
            for m in nodes:
                try:
                    c = m.stats(timeout=1.0).cluster
                except grpc.RpcError:
                    return None
                # Known, and announced (so that followers can forward to it).
                ids.add((c.leader_id, c.leader_address) if c.state != "candidate" else None)
            if len(ids) != 1 or None in ids:
                return None
            leader_id, address = ids.pop()
            leader = next((m for m in self.nodes if m.id == leader_id), None)
            if leader is None or address != leader.address:
                return None
            if leader not in nodes:
                return None
            return leader if leader.stats(timeout=1.0).cluster.state == "leader" else None
        return wait_until(agreed, timeout, "a leader")

    def wait_applied(self, ts, nodes=None, timeout=30.0):
        """Waits until every (running) node has applied the commit at ts (a
        node restarting on a state it fetched is briefly unreachable)."""
        def applied(m):
            try:
                return m.stats().last_commit_ts >= ts
            except grpc.RpcError:
                return False
        for m in nodes or [m for m in self.nodes if m.running()]:
            wait_until(lambda: applied(m), timeout, "node %d to apply ts %d" % (m.id, ts))


# Errors a failover or restart causes, which a client retries. UNKNOWN: the
# write may or may not have been committed (leadership changed after it was
# proposed); retrying an idempotent write is safe.
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN,
             grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)


class Client:
    """Calls a random running node; retries RETRYABLE errors until deadline."""

    def __init__(self, cluster, seed=0):
        self.cluster = cluster
        self.rng = random.Random(seed)
        self.retries = 0

    def node(self):
        nodes = [m for m in self.cluster.nodes if m.proc is not None]
        return self.rng.choice(nodes)

    def call_once(self, method, req, timeout=2.0, node=None):
        m = node or self.node()
        return getattr(m.stub, method)(req, timeout=timeout)

    def call(self, method, req, deadline=20.0):
        end = time.monotonic() + deadline
        while True:
            try:
                return self.call_once(method, req)
            except Exception as e:  # pylint: disable=broad-except
                # (an RPC error, or a node's channel closed by a restart)
                code = e.code() if isinstance(e, grpc.RpcError) else grpc.StatusCode.UNAVAILABLE
                if code not in RETRYABLE or time.monotonic() > end:
                    raise
                self.retries += 1
                time.sleep(0.02)


class Writers:
    """Threads putting unique keys through random nodes, retrying; records
    every acknowledged key with its commit_ts."""

    def __init__(self, cluster, n=4, prefix="w"):
        self.cluster = cluster
        self.acked = {}
        self.errors = []
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.first_ack_after = {}
        self.threads = [threading.Thread(target=self._run, args=(i, prefix), daemon=True)
                        for i in range(n)]
        for t in self.threads:
            t.start()

    def _run(self, i, prefix):
        client = Client(self.cluster, seed=i)
        k = 0
        while not self.stop_flag.is_set():
            key = ("%s%d-%06d" % (prefix, i, k)).encode()
            try:
                r = client.call("Put", kv_pb2.PutRequest(key=key, value=b"v" + key), deadline=30)
            except grpc.RpcError as e:
                with self.lock:
                    self.errors.append((key, e.code(), e.details()))
                k += 1
                continue
            with self.lock:
                self.acked[key] = r.commit_ts
            k += 1

    def count(self):
        with self.lock:
            return len(self.acked)

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=60)
        return dict(self.acked)
