"""Every grpcurl command the documentation prints, run as printed against a real
server through reflection alone (reflect_call.py takes grpcurl's command line and
has no .proto files).

The commands are taken from README.md, docs/*.md and deploy/**/*.md in the order
they appear (a heredoc after `-d @` is the call's input); only the documented
address localhost:50051 (and socket /run/nokv/nokv.sock) is replaced by the test
server's. Each must exit 0 and, for a call, print JSON; a few results are checked
beyond that. A command is run against a server set up the way its flags say:
`-plaintext` a plaintext one, `-unix` one on a Unix socket, `-cacert` one with mTLS
and bearer tokens, the command run where certs/ holds make_certs.sh's
certificates and with $NOKV_TOKEN set to a token the server accepts.
"""

import glob
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import unittest

from server_process import ServerProcess

RUNFILES = None
DOC_ADDRESS = "localhost:50051"
DOC_SOCKET = "/run/nokv/nokv.sock"
TOKEN = "docs-test-token"


def documented_commands(root):
    """(file, line, argv, stdin) for every grpcurl command in the docs."""
    files = [os.path.join(root, "README.md")]
    files += sorted(glob.glob(os.path.join(root, "docs", "*.md")))
    files += sorted(glob.glob(os.path.join(root, "deploy", "**", "*.md"), recursive=True))
    out = []
    for path in files:
        with open(path) as f:
            lines = f.read().split("\n")
        i = 0
        while i < len(lines):
            text = lines[i].strip()
            start = i
            i += 1
            if not text.startswith("grpcurl "):
                continue
            stdin = None
            heredoc = re.search(r"<<-?'?(\w+)'?\s*$", text)
            if heredoc:
                tag = heredoc.group(1)
                text = text[:heredoc.start()]
                body = []
                while i < len(lines) and lines[i].strip() != tag:
                    body.append(lines[i])
                    i += 1
                i += 1
                stdin = "\n".join(body) + "\n"
            argv = shlex.split(os.path.expandvars(text), comments=True)
            out.append((os.path.relpath(path, root), start + 1, argv[1:], stdin))
    return out


class Server(ServerProcess):
    """The server, with its address as grpcurl takes it (a socket's path alone)."""

    def __init__(self, data_dir, *flags, listen="127.0.0.1:0"):
        super().__init__(os.path.join(RUNFILES, "service/nokv_server"), data_dir, *flags,
                         listen=listen)
        self.address = self.address.replace("127.0.0.1", "localhost")
        if self.address.startswith("unix:"):
            self.address = self.address[len("unix:"):]

    def stop(self):
        return super().stop()[0]


def run(argv, address, stdin=None, cwd=None):
    argv = [address if a in (DOC_ADDRESS, DOC_SOCKET) else a for a in argv]
    return subprocess.run(
        [sys.executable, os.path.join(RUNFILES, "tests/service/reflect_call.py"), *argv],
        input=stdin, capture_output=True, text=True, timeout=60, cwd=cwd)


class DocumentedGrpcurlTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.commands = documented_commands(RUNFILES)

    def tearDown(self):
        self.tmp.cleanup()

    def check_commands(self, commands, server, cwd=None):
        try:
            for where, line, argv, stdin in commands:
                with self.subTest(f"{where}:{line}"):
                    r = run(argv, server.address, stdin, cwd)
                    verb = [a for a in argv if not a.startswith("-")]
                    if verb[-1] == "nokv.v1.KV/Watch":
                        # A watch follows commits until -max-time ends it, as
                        # grpcurl's does (DeadlineExceeded, a non-zero exit).
                        self.assertIn("DEADLINE_EXCEEDED", r.stderr, f"{where}:{line}")
                    else:
                        self.assertEqual(r.returncode, 0, f"{where}:{line} {argv}\n{r.stderr}")
                    if "list" in argv or "describe" in argv:
                        self.assertTrue(r.stdout.strip(), argv)
                        continue
                    decoder = json.JSONDecoder()
                    text, pos, results = r.stdout, 0, []
                    while pos < len(text.rstrip()):
                        obj, pos = decoder.raw_decode(text, pos)
                        results.append(obj)
                        while pos < len(text) and text[pos].isspace():
                            pos += 1
                    self.assertTrue(results, argv)
                    method = verb[-1]
                    if method == "grpc.health.v1.Health/Check":
                        self.assertEqual(results[0], {"status": "SERVING"})
                    if method == "nokv.v1.KV/Get":
                        self.assertTrue(results[0].get("found"), results)
                    if method == "nokv.v1.KV/Txn":
                        self.assertIn("committed", results[-1])
                    if method == "nokv.v1.KV/Write":  # the examples show writes that apply
                        self.assertTrue(results[0].get("succeeded"), results)
                    if method == "nokv.v1.KV/Watch":  # created, then the commits replayed
                        self.assertTrue(results[0].get("created"), results)
                        self.assertTrue(any(m.get("groups") for m in results[1:]), results)
        finally:
            self.assertEqual(server.stop(), 0)

    def test_plaintext_commands_work_as_printed(self):
        plain = [c for c in self.commands if "-plaintext" in c[2] and "-unix" not in c[2]]
        # The README alone prints list, describe, Put, Get, Scan, Stats, Compact,
        # the health check and a Txn: a broken extraction must not pass as "none".
        self.assertGreaterEqual(len(plain), 9, plain)
        self.check_commands(plain, Server(os.path.join(self.tmp.name, "db")))

    def test_unix_socket_commands_work_as_printed(self):
        unix = [c for c in self.commands if "-unix" in c[2]]
        self.assertGreaterEqual(len(unix), 1)
        sock = os.path.join(self.tmp.name, "nokv.sock")
        self.check_commands(unix, Server(os.path.join(self.tmp.name, "db"), listen="unix:" + sock))

    def test_tls_commands_work_as_printed(self):
        tls = [c for c in self.commands if "-cacert" in c[2]]
        self.assertGreaterEqual(len(tls), 4)
        certs = os.path.join(self.tmp.name, "certs")
        subprocess.run(["bash", os.path.join(RUNFILES, "tests/service/make_certs.sh"), certs],
                       check=True)
        tokens = os.path.join(self.tmp.name, "tokens")
        with open(tokens, "w") as f:
            f.write(TOKEN + "\n")
        server = Server(os.path.join(self.tmp.name, "db"),
                        "--tls_cert_file=" + os.path.join(certs, "server.crt"),
                        "--tls_key_file=" + os.path.join(certs, "server.key"),
                        "--tls_client_ca_file=" + os.path.join(certs, "ca.crt"),
                        "--auth_token_file=" + tokens)
        self.check_commands(tls, server, cwd=self.tmp.name)

    def test_health_is_described_by_reflection(self):
        server = Server(os.path.join(self.tmp.name, "db"))
        try:
            r = run(["-plaintext", DOC_ADDRESS, "describe", "grpc.health.v1.Health"],
                    server.address)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("rpc Check", r.stdout)
            self.assertIn("rpc Watch", r.stdout)
        finally:
            self.assertEqual(server.stop(), 0)


if __name__ == "__main__":
    RUNFILES = sys.argv.pop(1)
    os.environ["NOKV_TOKEN"] = TOKEN  # before the docs are read: commands print $NOKV_TOKEN
    unittest.main(verbosity=2)
