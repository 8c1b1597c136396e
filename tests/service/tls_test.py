"""TLS, mTLS, bearer tokens and Unix sockets against the real nokv_server, from
Python's gRPC client. Certificates are made at test time with openssl
(make_certs.sh): a CA, server and client certificates, a client certificate from
another CA, an expired one, and a second server certificate for rotation.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import grpc

from nokv.v1 import kv_pb2, kv_pb2_grpc
import health_pb2
from server_process import ServerProcess
import health_pb2_grpc
import reflection_pb2
import reflection_pb2_grpc

RUNFILES = None
CERTS = None  # directory make_certs.sh filled


def cert(name):
    with open(os.path.join(CERTS, name), "rb") as f:
        return f.read()


def tls_creds(root="ca.crt", client=None):
    if client is None:
        return grpc.ssl_channel_credentials(cert(root))
    return grpc.ssl_channel_credentials(cert(root), cert(client + ".key"), cert(client + ".crt"))


class Server(ServerProcess):
    def __init__(self, data_dir, *flags, listen="127.0.0.1:0"):
        super().__init__(os.path.join(RUNFILES, "service/nokv_server"), data_dir, *flags,
                         listen=listen)
        # The certificates name localhost: connect by that name.
        self.address = self.address.replace("127.0.0.1", "localhost")


def free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def put(channel, key, metadata=(), timeout=10):
    kv = kv_pb2_grpc.KVStub(channel)
    return kv.Put(kv_pb2.PutRequest(key=key, value=b"v"), metadata=metadata, timeout=timeout)


def code_of(fn):
    try:
        fn()
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def eventually(fn, deadline_s=20):
    """Polls fn until it is true (a reload is the server's own timer)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if fn():
            return True
        time.sleep(0.1)
    return False


class TlsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            rc, err = s.stop()
            self.assertEqual(rc, 0, err)
            self.assertIn("stopped cleanly", err)
        self.tmp.cleanup()

    def start(self, *flags, **kw):
        s = Server(os.path.join(self.tmp.name, "db%d" % len(self.servers)), *flags, **kw)
        self.servers.append(s)
        return s

    def tls_flags(self, client_ca=True, cert_dir=None, reload=None):
        cert_dir = cert_dir or CERTS
        flags = ["--tls_cert_file=" + os.path.join(cert_dir, "server.crt"),
                 "--tls_key_file=" + os.path.join(cert_dir, "server.key")]
        if client_ca:
            flags.append("--tls_client_ca_file=" + os.path.join(CERTS, "ca.crt"))
        if reload:
            flags.append("--tls_reload_seconds=%d" % reload)
        return flags

    def test_mtls_accepts_only_certificates_of_its_ca(self):
        s = self.start(*self.tls_flags())
        self.assertIn("mTLS", s.line)
        with grpc.secure_channel(s.address, tls_creds(client="client")) as ch:
            put(ch, b"k")
            got = kv_pb2_grpc.KVStub(ch).Get(kv_pb2.GetRequest(key=b"k"), timeout=10)
            self.assertTrue(got.found)
        refused = {
            "no client certificate": tls_creds(),
            "a certificate from another CA": tls_creds(client="other-client"),
            "an expired certificate": tls_creds(client="expired-client"),
            "a client that does not trust the server's CA": tls_creds("other-ca.crt", "client"),
        }
        for why, creds in refused.items():
            with self.subTest(why), grpc.secure_channel(s.address, creds) as ch:
                self.assertEqual(code_of(lambda: put(ch, b"k", timeout=5)),
                                 grpc.StatusCode.UNAVAILABLE, why)
        with grpc.insecure_channel(s.address) as ch:
            self.assertEqual(code_of(lambda: put(ch, b"k", timeout=5)),
                             grpc.StatusCode.UNAVAILABLE)

    def test_tls_without_client_certificates(self):
        s = self.start(*self.tls_flags(client_ca=False))
        self.assertIn("TLS", s.line)
        with grpc.secure_channel(s.address, tls_creds()) as ch:
            put(ch, b"k")
            health = health_pb2_grpc.HealthStub(ch)
            self.assertEqual(health.Check(health_pb2.HealthCheckRequest(service="nokv.v1.KV"),
                                          timeout=10).status,
                             health_pb2.HealthCheckResponse.SERVING)

    def test_plaintext_health_port_for_probes(self):
        health_port = free_port()
        s = self.start(*self.tls_flags(), f"--health_listen=127.0.0.1:{health_port}")
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as ch:
            health = health_pb2_grpc.HealthStub(ch)
            for service in ("", "nokv.v1.KV"):
                self.assertEqual(health.Check(health_pb2.HealthCheckRequest(service=service),
                                              timeout=10).status,
                                 health_pb2.HealthCheckResponse.SERVING)
            self.assertEqual(code_of(lambda: health.Check(
                health_pb2.HealthCheckRequest(service="other"), timeout=10)),
                grpc.StatusCode.NOT_FOUND)
            # It answers health checks alone: no KV, no reflection.
            self.assertEqual(code_of(lambda: put(ch, b"k", timeout=10)),
                             grpc.StatusCode.UNIMPLEMENTED)
        # The TLS port still refuses plaintext.
        with grpc.insecure_channel(s.address) as ch:
            self.assertEqual(code_of(lambda: put(ch, b"k", timeout=5)),
                             grpc.StatusCode.UNAVAILABLE)

    def test_rotated_certificates_serve_new_connections_old_ones_keep_working(self):
        live = os.path.join(self.tmp.name, "live")
        os.mkdir(live)
        for f in ("server.crt", "server.key"):
            shutil.copy(os.path.join(CERTS, f), live)
        s = self.start(*self.tls_flags(client_ca=False, cert_dir=live, reload=1))
        old = grpc.secure_channel(s.address, tls_creds())
        put(old, b"before")
        # Replace both files the way a rotation does: new content renamed over the old.
        for src, dst in (("other-server.key", "server.key"), ("other-server.crt", "server.crt")):
            shutil.copy(os.path.join(CERTS, src), os.path.join(live, dst + ".tmp"))
            os.rename(os.path.join(live, dst + ".tmp"), os.path.join(live, dst))

        def new_connection_sees_new_certificate():
            with grpc.secure_channel(s.address, tls_creds("other-ca.crt")) as ch:
                return code_of(lambda: put(ch, b"after", timeout=2)) == grpc.StatusCode.OK
        self.assertTrue(eventually(new_connection_sees_new_certificate))
        with grpc.secure_channel(s.address, tls_creds()) as ch:
            self.assertEqual(code_of(lambda: put(ch, b"k", timeout=5)),
                             grpc.StatusCode.UNAVAILABLE)
        put(old, b"still")  # the connection made before the rotation
        old.close()

    def test_bearer_tokens(self):
        tokens = os.path.join(self.tmp.name, "tokens")
        with open(tokens, "w") as f:
            f.write("# clients\nfirst-token\n\nsecond-token\n")
        s = self.start("--auth_token_file=" + tokens)
        self.assertIn("bearer tokens required", s.line)
        ch = grpc.insecure_channel(s.address)
        kv = kv_pb2_grpc.KVStub(ch)
        calls = {
            "Get": lambda md: kv.Get(kv_pb2.GetRequest(key=b"k"), metadata=md, timeout=10),
            "Put": lambda md: put(ch, b"k", md),
            "Delete": lambda md: kv.Delete(kv_pb2.DeleteRequest(key=b"k"), metadata=md,
                                           timeout=10),
            "Stats": lambda md: kv.Stats(kv_pb2.StatsRequest(), metadata=md, timeout=10),
            "Scan": lambda md: list(kv.Scan(kv_pb2.ScanRequest(limit=1), metadata=md,
                                            timeout=10)),
            "Txn": lambda md: list(kv.Txn(iter([kv_pb2.TxnRequest(
                get=kv_pb2.TxnGet(key=b"k"))]), metadata=md, timeout=10)),
            "Compact": lambda md: kv.Compact(kv_pb2.CompactRequest(), metadata=md, timeout=30),
        }
        for name, call in calls.items():
            with self.subTest(name):
                self.assertEqual(code_of(lambda: call(())), grpc.StatusCode.UNAUTHENTICATED)
                for bad in ("Bearer wrong", "Bearer first-toke", "Bearer first-tokenX",
                            "first-token", "Basic Zmlyc3QtdG9rZW4=", "Bearer "):
                    self.assertEqual(code_of(lambda: call((("authorization", bad),))),
                                     grpc.StatusCode.UNAUTHENTICATED, bad)
                for good in ("first-token", "second-token"):
                    self.assertEqual(code_of(lambda: call((("authorization",
                                                            "Bearer " + good),))),
                                     grpc.StatusCode.OK, good)
        # Probes and reflection need no token.
        health = health_pb2_grpc.HealthStub(ch)
        self.assertEqual(health.Check(health_pb2.HealthCheckRequest(service="nokv.v1.KV"),
                                      timeout=10).status,
                         health_pb2.HealthCheckResponse.SERVING)
        self.assertEqual(code_of(lambda: self.list_services(ch)), grpc.StatusCode.OK)
        # A new token file takes effect without a restart.
        with open(tokens + ".tmp", "w") as f:
            f.write("third-token\n")
        os.rename(tokens + ".tmp", tokens)
        self.assertTrue(eventually(lambda: code_of(lambda: put(
            ch, b"k", (("authorization", "Bearer third-token"),))) == grpc.StatusCode.OK))
        self.assertEqual(code_of(lambda: put(ch, b"k", (("authorization", "Bearer first-token"),))),
                         grpc.StatusCode.UNAUTHENTICATED)
        # A file left empty keeps the tokens in force rather than locking everyone out:
        # once the server has looked at it (it says so), the token still works.
        with open(tokens, "w") as f:
            f.write("\n")
        self.assertTrue(eventually(lambda: code_of(lambda: put(
            ch, b"k", (("authorization", "Bearer third-token"),))) == grpc.StatusCode.OK and
            "keeping the tokens in force" in s.stderr_text()))
        self.assertEqual(code_of(lambda: put(ch, b"k", (("authorization", "Bearer third-token"),))),
                         grpc.StatusCode.OK)
        ch.close()

    def test_nokv_stats_over_mtls_with_a_token(self):
        tokens = os.path.join(self.tmp.name, "tokens")
        with open(tokens, "w") as f:
            f.write("# operators\nops-token\n")
        s = self.start(*self.tls_flags(), "--auth_token_file=" + tokens)
        remote = os.path.join(RUNFILES, "service/nokv-remote")
        tls = ["--tls_ca_file", os.path.join(CERTS, "ca.crt"),
               "--tls_cert_file", os.path.join(CERTS, "client.crt"),
               "--tls_key_file", os.path.join(CERTS, "client.key")]
        base = [remote, "stats", "--addr", s.address, "--json"]
        ok = subprocess.run(base + tls + ["--token_file", tokens], capture_output=True,
                            text=True, timeout=60)
        self.assertEqual(ok.returncode, 0, ok.stderr)
        self.assertIn("counters", ok.stdout)
        env = dict(os.environ, NOKV_TOKEN="ops-token")
        self.assertEqual(subprocess.run(base + tls, capture_output=True, env=env,
                                        timeout=60).returncode, 0)
        no_token = subprocess.run(base + tls, capture_output=True, text=True, timeout=60,
                                  env={k: v for k, v in os.environ.items() if k != "NOKV_TOKEN"})
        self.assertEqual(no_token.returncode, 1)
        self.assertIn("missing `authorization", no_token.stderr)
        no_cert = subprocess.run(base + tls[:2] + ["--token_file", tokens],
                                 capture_output=True, text=True, timeout=60)
        self.assertEqual(no_cert.returncode, 1)

    def list_services(self, ch, metadata=()):
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        resps = list(stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
            metadata=metadata, timeout=10))
        return [s.name for s in resps[0].list_services_response.service]

    def test_reflection_behind_the_token(self):
        tokens = os.path.join(self.tmp.name, "tokens")
        with open(tokens, "w") as f:
            f.write("tok\n")
        s = self.start("--auth_token_file=" + tokens, "--auth_reflection")
        with grpc.insecure_channel(s.address) as ch:
            self.assertEqual(code_of(lambda: self.list_services(ch)),
                             grpc.StatusCode.UNAUTHENTICATED)
            self.assertIn("nokv.v1.KV", self.list_services(ch, (("authorization", "Bearer tok"),)))
            health = health_pb2_grpc.HealthStub(ch)
            self.assertEqual(health.Check(health_pb2.HealthCheckRequest(), timeout=10).status,
                             health_pb2.HealthCheckResponse.SERVING)

    def test_unix_socket(self):
        path = os.path.join(self.tmp.name, "nokv.sock")
        data = os.path.join(self.tmp.name, "unix-db")
        first = Server(data, listen="unix:" + path)
        self.assertEqual(first.address, "unix:" + path)
        with grpc.insecure_channel(first.address) as ch:
            kv_pb2_grpc.KVStub(ch).Put(kv_pb2.PutRequest(key=b"over-unix", value=b"v", sync=True),
                                       timeout=10)
        # Killed, it leaves its socket file behind; the next server replaces it.
        first.stop(signal.SIGKILL)
        self.assertTrue(os.path.exists(path))
        s = Server(data, listen="unix:" + path)
        self.servers.append(s)
        with grpc.insecure_channel(s.address) as ch:
            got = kv_pb2_grpc.KVStub(ch).Get(kv_pb2.GetRequest(key=b"over-unix"), timeout=10)
            self.assertTrue(got.found)

    def test_bad_security_flags_refuse_to_start(self):
        empty = os.path.join(self.tmp.name, "empty")
        open(empty, "w").close()
        cases = {
            "missing certificate": ["--tls_cert_file=/nonexistent.crt",
                                    "--tls_key_file=" + os.path.join(CERTS, "server.key")],
            "certificate without key": ["--tls_cert_file=" + os.path.join(CERTS, "server.crt")],
            "client CA without TLS": ["--tls_client_ca_file=" + os.path.join(CERTS, "ca.crt")],
            "not PEM": ["--tls_cert_file=" + empty, "--tls_key_file=" + empty],
            "token file with no token": ["--auth_token_file=" + empty],
            "missing token file": ["--auth_token_file=/nonexistent"],
        }
        for why, flags in cases.items():
            with self.subTest(why):
                r = subprocess.run(
                    [os.path.join(RUNFILES, "service/nokv_server"), "--listen=127.0.0.1:0",
                     "--data_dir=" + os.path.join(self.tmp.name, "refused"), *flags],
                    capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 1, why)
                self.assertNotIn("listening on", r.stdout)
                self.assertIn("nokv-server:", r.stderr)


if __name__ == "__main__":
    RUNFILES = sys.argv.pop(1)
    CERTS = tempfile.mkdtemp()
    subprocess.run(["bash", os.path.join(RUNFILES, "tests/service/make_certs.sh"), CERTS],
                   check=True)
    try:
        unittest.main(verbosity=2)
    finally:
        shutil.rmtree(CERTS)
