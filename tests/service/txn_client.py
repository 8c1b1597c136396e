"""A client side of the Txn RPC for the tests: one transaction on one stream."""
import queue

import grpc

from nokv.v1 import kv_pb2


class Txn:
    """One transaction on one Txn stream: each call sends a request and waits for
    its answer. A stream the server ended raises grpc.RpcError."""

    def __init__(self, kv, timeout=None, metadata=None):
        self._requests = queue.Queue()
        self._responses = kv.Txn(iter(self._requests.get, None), timeout=timeout,
                                 metadata=metadata)

    def call(self, **op):
        self._requests.put(kv_pb2.TxnRequest(**op))
        return next(self._responses)

    def begin(self, **options):
        return self.call(begin=kv_pb2.TxnBegin(**options))

    def get(self, key):
        r = self.call(get=kv_pb2.TxnGet(key=key))
        return r.get.value if r.get.found else None

    def put(self, key, value):
        return self.call(put=kv_pb2.TxnPut(key=key, value=value))

    def delete(self, key):
        return self.call(delete=kv_pb2.TxnDelete(key=key))

    def scan(self, **bounds):
        """(key, value, commit_ts) of every chunk of one scan."""
        self._requests.put(kv_pb2.TxnRequest(scan=kv_pb2.TxnScan(**bounds)))
        out = []
        for r in self._responses:
            out += [(p.key, p.value, p.commit_ts) for p in r.scan.kvs]
            if r.scan.done:
                return out
        raise AssertionError("the stream ended inside a scan")

    def commit(self, sync=False):
        r = self.call(commit=kv_pb2.TxnCommit(sync=sync))
        self.close()
        return r.committed.commit_ts

    def rollback(self):
        self.call(rollback=kv_pb2.TxnRollback())
        self.close()

    def close(self):
        self._requests.put(None)

    def wait_end(self):
        """Blocks until the server ends the stream; returns its status code and
        details."""
        try:
            for _ in self._responses:
                raise AssertionError("unexpected message")
        except grpc.RpcError as e:
            return e.code(), e.details()
        return grpc.StatusCode.OK, ""
