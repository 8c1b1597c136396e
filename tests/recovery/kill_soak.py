"""Kill -9 soak against the real server: cycles of (start nokv_server, check every
acknowledged write, run a mixed workload from several client threads, SIGKILL the
server at a random moment).

Each client thread owns its keys, so the order of writes to a key is the order
its thread issued them. Every operation is logged before it is sent and once it
is acknowledged; after each restart the state of every key must be the newest
acknowledged write to it, except that the one operation a thread had in flight
when the server died may have happened or not -- all of it or none (a
transaction's keys together). What each check finds for those operations is
logged too, so the next cycle's check is exact.

Workload: puts of small and large values (both sides of the value-log
threshold), synced and not, deletes, and transactions over the Txn stream; the
server runs with tiny memtables and value-log segments so flushes, compactions
and value-log GC happen all the time.

Usage: kill_soak.py SERVER_BINARY --cycles N [--seed S] [--out DIR]
Prints one JSON line per cycle and a final summary; exit 1 on any loss.
"""
import argparse
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import grpc

from nokv.v1 import kv_pb2, kv_pb2_grpc

THREADS = 3
KEYS_PER_THREAD = 48
LARGE = 2000  # above the server's --value_threshold
SERVER_FLAGS = [
    "--memtable_bytes=65536",
    "--vlog_segment_bytes=65536",
    "--vlog_gc_ratio=0.3",
    "--value_threshold=1024",
    "--shutdown_grace_seconds=1",
]


def value_of(op, key, n):
    head = ("%d:%s:" % (op, key)).encode()
    fill = bytes((97 + (op * 7 + i) % 26) for i in range(max(0, n - len(head))))
    return (head + fill)[:max(n, len(head))]


def op_of(value):
    return int(value.split(b":", 1)[0])


class Model:
    """The log of operations (one file, shared by the cycles) and what it says
    every key must hold."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.ops = {}       # op -> (thread, sync, [(key, length or 0 for delete)])
        self.acked = set()
        self.resolved = {}  # op -> True (applied) / False (not), for unacknowledged ops
        self.next_op = 1
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    self._apply(line.split())
        self.out = open(path, "a")

    def _apply(self, w):
        if w[0] == "B":
            op, thread, sync = int(w[1]), int(w[2]), w[3] == "1"
            keys = [(k.split("=")[0], int(k.split("=")[1])) for k in w[4:]]
            self.ops[op] = (thread, sync, keys)
            self.next_op = max(self.next_op, op + 1)
        elif w[0] == "A":
            self.acked.add(int(w[1]))
        elif w[0] == "R":
            self.resolved[int(w[1])] = w[2] == "1"

    def log(self, line):
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()
            self._apply(line.split())

    def begin(self, thread, sync, keys):
        with self.lock:
            op = self.next_op
            self.next_op += 1
        self.log("B %d %d %d %s" % (op, thread, 1 if sync else 0,
                                    " ".join("%s=%d" % kv for kv in keys)))
        return op

    def expectations(self):
        """key -> (settled op or None for absent/deleted, pending op or None)."""
        settled, pending = {}, {}
        for op in sorted(self.ops):
            _, _, keys = self.ops[op]
            happened = op in self.acked or self.resolved.get(op) is True
            unknown = op not in self.acked and op not in self.resolved
            for key, length in keys:
                if happened:
                    settled[key] = (op, length)
                    pending.pop(key, None)
                elif unknown:
                    pending[key] = (op, length)
        return settled, pending


def check(model, kv):
    """Reads every key the model knows; resolves in-flight operations. Returns
    (keys checked, problems)."""
    settled, pending = model.expectations()
    keys = sorted(set(settled) | set(pending))
    seen = {}
    problems = []
    for key in keys:
        r = kv.Get(kv_pb2.GetRequest(key=key.encode()), timeout=30)
        got = None
        if r.found:
            op = op_of(r.value)
            length = model.ops.get(op, (0, 0, []))[2]
            want_len = dict(length).get(key)
            if want_len is None or r.value != value_of(op, key, want_len):
                problems.append("%s holds bytes no write of it had" % key)
                continue
            got = op
        seen[key] = got
        old = settled.get(key)
        old_op = old[0] if old and old[1] > 0 else None
        new = pending.get(key)
        new_op = new[0] if new and new[1] > 0 else None
        allowed = {old_op}
        if new is not None:
            allowed.add(new_op)
        if got not in allowed:
            problems.append("%s holds %s, expected %s%s" % (
                key, got, old_op, " or %s" % new_op if new is not None else ""))
    # An in-flight operation happened as a whole or not at all.
    for op in sorted({p[0] for p in pending.values()}):
        _, _, opkeys = model.ops[op]
        outcomes = set()
        for key, length in opkeys:
            if pending.get(key, (None,))[0] != op:
                continue
            old = settled.get(key)
            old_op = old[0] if old and old[1] > 0 else None
            new_op = op if length > 0 else None
            if old_op == new_op:
                continue  # this key cannot tell
            outcomes.add(seen.get(key) == new_op)
        if len(outcomes) > 1:
            problems.append("operation %d happened for some of its keys only" % op)
        elif outcomes:
            model.log("R %d %d" % (op, 1 if outcomes.pop() else 0))
        else:
            model.log("R %d 0" % op)  # indistinguishable: either reading is the same
    return len(keys), problems


class Txn:
    def __init__(self, kv):
        self.requests = queue.Queue()
        self.responses = kv.Txn(iter(self.requests.get, None), timeout=30)

    def call(self, **req):
        self.requests.put(kv_pb2.TxnRequest(**req))
        return next(self.responses)

    def close(self):
        self.requests.put(None)


def worker(thread, model, kv, rng, stop, counts):
    mine = ["t%d/k%02d" % (thread, i) for i in range(KEYS_PER_THREAD)]
    while not stop.is_set():
        kind = rng.random()
        sync = rng.random() < 0.3
        try:
            if kind < 0.65:
                key = rng.choice(mine)
                n = LARGE + rng.randrange(500) if rng.random() < 0.35 else 20 + rng.randrange(80)
                op = model.begin(thread, sync, [(key, n)])
                kv.Put(kv_pb2.PutRequest(key=key.encode(), value=value_of(op, key, n), sync=sync),
                       timeout=30)
            elif kind < 0.8:
                key = rng.choice(mine)
                op = model.begin(thread, sync, [(key, 0)])
                kv.Delete(kv_pb2.DeleteRequest(key=key.encode(), sync=sync), timeout=30)
            else:
                keys = rng.sample(mine, 2 + rng.randrange(2))
                plan = [(k, LARGE if rng.random() < 0.3 else 40) for k in keys]
                op = model.begin(thread, sync, plan)
                t = Txn(kv)
                try:
                    for k, n in plan:
                        t.call(put=kv_pb2.TxnPut(key=k.encode(), value=value_of(op, k, n)))
                    t.call(commit=kv_pb2.TxnCommit(sync=sync))
                finally:
                    t.close()
            model.log("A %d" % op)
            counts["acked"] += 1
            if sync:
                counts["synced"] += 1
        except (grpc.RpcError, StopIteration, ValueError):
            return  # the server died: this operation stays in flight


class Server:
    def __init__(self, binary, data_dir):
        self.proc = subprocess.Popen(
            [binary, "--listen=127.0.0.1:0", "--data_dir=" + data_dir, *SERVER_FLAGS],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError("server did not start: %r\n%s" % (line, self.proc.stderr.read()))
        self.address = line.split("listening on ")[1].split(",")[0]
        self.channel = grpc.insecure_channel(self.address)
        grpc.channel_ready_future(self.channel).result(timeout=60)
        self.kv = kv_pb2_grpc.KVStub(self.channel)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.channel.close()
        self.proc.stdout.close()
        self.proc.stderr.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("server")
    ap.add_argument("--cycles", type=int, default=8)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="nokv-soak-")
    data = os.path.join(work, "data")
    model = Model(os.path.join(args.out or work, "soak-model.log"))
    totals = {"cycles": 0, "acked": 0, "synced": 0, "checked": 0, "problems": 0}
    print(json.dumps({"seed": args.seed}), flush=True)
    try:
        for cycle in range(args.cycles + 1):
            server = Server(args.server, data)
            checked, problems = check(model, server.kv)
            totals["checked"] += checked
            totals["problems"] += len(problems)
            for p in problems[:10]:
                print("LOST: cycle %d: %s" % (cycle, p), file=sys.stderr, flush=True)
            if cycle == args.cycles:
                server.kill()
                break
            stop = threading.Event()
            counts = {"acked": 0, "synced": 0}
            threads = [threading.Thread(target=worker,
                                        args=(t, model, server.kv, random.Random(rng.random()),
                                              stop, counts))
                       for t in range(THREADS)]
            for t in threads:
                t.start()
            time.sleep(0.05 + rng.random() * 0.6)
            server.kill()  # SIGKILL, mid-workload
            stop.set()
            for t in threads:
                t.join()
            totals["cycles"] += 1
            totals["acked"] += counts["acked"]
            totals["synced"] += counts["synced"]
            print(json.dumps({"cycle": cycle, "keys_checked": checked, "lost": len(problems),
                              "acked": counts["acked"], "synced": counts["synced"]}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    totals["lost"] = totals.pop("problems")
    print("KILL_SOAK " + json.dumps(totals), flush=True)
    return 0 if totals["lost"] == 0 and totals["acked"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
