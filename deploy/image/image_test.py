"""The container image, built by build_image.py from this test's binaries, run.

- Reproducible: two builds from the same inputs give the same digests.
- Accepted: skopeo reads the OCI layout, the OCI archive and the docker-archive;
  `podman load` loads the docker-archive (what `docker load` and
  `kind load image-archive` read) under the tag nokv-c:VERSION.
- Minimal: the config runs as 65532 with /data as the volume; the root
  filesystem has no shell, package manager, compiler or interpreter, and no
  program but the three NoKV-C binaries.
- Runs: the layer, as the docker-archive carries it, starts the server as uid
  65532 on a data volume (with `podman run` where the machine allows it; else in
  its own mount and PID namespaces, chrooted into the unpacked layer); a client
  Puts and Gets through it, health says SERVING, SIGTERM stops it cleanly, and a
  second start on the same volume finds the data.

Must run as root (chroot, mounts, podman's storage); it says so otherwise.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest

import grpc

from nokv.v1 import kv_pb2, kv_pb2_grpc
import health_pb2
import health_pb2_grpc

RUNFILES = None
VERSION = None
EPOCH = 1764633600
UID = 65532
BINARIES = {
    "nokv_server": "service/nokv_server",
    "nokv": "core/cli/nokv",
    "nokv-remote": "service/nokv-remote",
}
FORBIDDEN = {"sh", "bash", "dash", "busybox", "ash", "zsh", "apt", "apt-get", "dpkg",
             "gcc", "cc", "g++", "ld", "as", "make", "perl", "python3", "python", "curl",
             "wget", "su", "sudo", "mount", "login"}


def build(out):
    argv = [sys.executable, os.path.join(RUNFILES, "deploy/image/build_image.py"),
            "--out", out, "--version", VERSION, "--epoch", str(EPOCH)]
    for name, path in BINARIES.items():
        argv += ["--binary", f"{name}={os.path.join(RUNFILES, path)}"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise AssertionError(f"build_image.py failed:\n{r.stdout}\n{r.stderr}")
    return r.stdout


def digest_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class ImageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="nokv-image-")
        cls.out = os.path.join(cls.tmp, "a")
        start = time.monotonic()
        cls.report = build(cls.out)
        cls.build_seconds = time.monotonic() - start
        print(cls.report, f"built in {cls.build_seconds:.1f} s", file=sys.stderr)
        cls.docker_tar = os.path.join(cls.out, f"nokv-c-{VERSION}.docker.tar")
        cls.oci_tar = os.path.join(cls.out, f"nokv-c-{VERSION}.oci.tar")
        # The root filesystem exactly as the docker-archive carries it.
        cls.rootfs = os.path.join(cls.tmp, "rootfs")
        os.mkdir(cls.rootfs)
        with tarfile.open(cls.docker_tar) as outer:
            manifest = json.load(outer.extractfile("manifest.json"))[0]
            cls.config = json.load(outer.extractfile(manifest["Config"]))
            with tarfile.open(fileobj=outer.extractfile(manifest["Layers"][0])) as layer:
                cls.members = layer.getmembers()
                layer.extractall(cls.rootfs, numeric_owner=True)
        cls.manifest = manifest

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_the_same_inputs_give_the_same_image(self):
        again = os.path.join(self.tmp, "b")
        build(again)
        for name in (f"nokv-c-{VERSION}.docker.tar", f"nokv-c-{VERSION}.oci.tar"):
            self.assertEqual(digest_of(os.path.join(self.out, name)),
                             digest_of(os.path.join(again, name)), name)

    def test_tools_accept_every_format(self):
        for ref in (f"oci:{self.out}/oci:{VERSION}", f"oci-archive:{self.oci_tar}",
                    f"docker-archive:{self.docker_tar}"):
            with self.subTest(ref):
                r = subprocess.run(["skopeo", "inspect", "--config", ref],
                                   capture_output=True, text=True, timeout=120)
                self.assertEqual(r.returncode, 0, r.stderr)
                config = json.loads(r.stdout)["config"]
                self.assertEqual(config["User"], f"{UID}:{UID}")
                self.assertEqual(config["Entrypoint"], ["/usr/local/bin/nokv_server"])
        storage = os.path.join(self.tmp, "podman")
        t0 = time.monotonic()
        r = subprocess.run(self.podman(storage) + ["load", "-i", self.docker_tar],
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        print(f"podman load: {time.monotonic() - t0:.2f} s", file=sys.stderr)
        self.assertIn(f"nokv-c:{VERSION}", r.stdout + r.stderr)

    def podman(self, storage):
        return ["podman", "--root", os.path.join(storage, "root"),
                "--runroot", os.path.join(storage, "run"), "--storage-driver", "vfs"]

    def test_config_runs_as_nonroot_with_a_data_volume(self):
        self.assertEqual(self.manifest["RepoTags"], [f"nokv-c:{VERSION}"])
        c = self.config["config"]
        self.assertEqual(c["User"], f"{UID}:{UID}")
        self.assertEqual(list(c["Volumes"]), ["/data"])
        self.assertIn("50051/tcp", c["ExposedPorts"])
        self.assertEqual(c["Cmd"], ["--listen=0.0.0.0:50051", "--data_dir=/data"])
        data = os.stat(os.path.join(self.rootfs, "data"))
        self.assertEqual((data.st_uid, data.st_gid), (UID, UID))
        with open(os.path.join(self.rootfs, "etc/passwd")) as f:
            self.assertIn(f"nonroot:x:{UID}:{UID}:", f.read())

    def test_rootfs_has_no_tool_it_does_not_need(self):
        programs, names = [], set()
        for m in self.members:
            base = os.path.basename(m.name)
            names.add(base)
            if m.isreg() and m.mode & 0o111 and not m.name.startswith("usr/lib/"):
                programs.append(m.name)
        self.assertEqual(sorted(programs), sorted(f"usr/local/bin/{b}" for b in BINARIES))
        self.assertEqual(FORBIDDEN & names, set())
        for gone in ("var/lib/dpkg", "usr/lib/apt", "usr/share/man", "usr/lib/gcc"):
            self.assertFalse(os.path.exists(os.path.join(self.rootfs, gone)), gone)
        # What the server needs is there: CA bundle, zone data, its libraries.
        self.assertGreater(os.path.getsize(os.path.join(self.rootfs,
                                                        "etc/ssl/certs/ca-certificates.crt")), 100_000)
        self.assertTrue(os.path.exists(os.path.join(self.rootfs, "usr/share/zoneinfo/Etc/UTC")))
        size = sum(m.size for m in self.members)
        print(f"root filesystem: {len(self.members)} entries, {size / 1e6:.1f} MB; "
              f"image {os.path.getsize(self.oci_tar) / 1e6:.1f} MB compressed", file=sys.stderr)

    def start(self, volume):
        """The server from the image on volume; (process, address, how, seconds to SERVING)."""
        port = free_port()
        args = [f"--listen=127.0.0.1:{port}", "--data_dir=/data"]
        storage = os.path.join(self.tmp, "podman-run")
        proc = None
        if not hasattr(ImageTest, "podman_runs"):
            subprocess.run(self.podman(storage) + ["load", "-i", self.docker_tar],
                           capture_output=True, timeout=300)
            probe = subprocess.run(
                self.podman(storage) + ["run", "--rm", "--cgroups=disabled", "--network=host",
                                        "--entrypoint", "/usr/local/bin/nokv", f"nokv-c:{VERSION}"],
                capture_output=True, text=True, timeout=120)
            ImageTest.podman_runs = "OCI" not in probe.stderr and "crun" not in probe.stderr
            if not ImageTest.podman_runs:
                print(f"podman run cannot start containers here ({probe.stderr.strip()}); "
                      "running the unpacked layer in its own namespaces", file=sys.stderr)
        t0 = time.monotonic()
        if ImageTest.podman_runs:
            how = "podman run"
            proc = subprocess.Popen(
                self.podman(storage) + ["run", "--rm", "--cgroups=disabled", "--network=host",
                                        "-v", f"{volume}:/data", f"nokv-c:{VERSION}", *args],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        else:
            how = "unshare+chroot"
            # Its own mount and PID namespaces: /proc of its own, the volume bound
            # on /data, then chroot into the layer as the image's user.
            script = ('mount --bind "$1" "$2/data" && exec chroot --userspec=$3:$3 "$2" '
                      '/usr/local/bin/nokv_server "${@:4}"')
            proc = subprocess.Popen(
                ["unshare", "--mount", "--pid", "--fork",
                 "--mount-proc=" + os.path.join(self.rootfs, "proc"),
                 "bash", "-c", script, "start", volume, self.rootfs, str(UID), *args],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        if "listening on" not in line:
            proc.kill()
            raise AssertionError(f"server did not start ({how}): {line!r} {proc.stderr.read()}")
        address = f"127.0.0.1:{port}"
        channel = grpc.insecure_channel(address)
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service="nokv.v1.KV"),
                              wait_for_ready=True, timeout=30).status
        seconds = time.monotonic() - t0
        self.assertEqual(status, health_pb2.HealthCheckResponse.SERVING)
        return proc, channel, how, seconds

    def server_pid(self, proc):
        """The server's pid: podman's or unshare's child (bash exec'd chroot exec'd it)."""
        if ImageTest.podman_runs:
            out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
            pids = out.stdout.split()
            return int(pids[0]) if pids else proc.pid
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
            return int(f.read().split()[0])

    def server_uid(self, proc):
        with open(f"/proc/{self.server_pid(proc)}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return {int(u) for u in line.split()[1:]}
        return set()

    def stop(self, proc, channel):
        channel.close()
        if ImageTest.podman_runs:
            proc.send_signal(signal.SIGTERM)
        else:
            os.kill(self.server_pid(proc), signal.SIGTERM)
        rc = proc.wait(timeout=60)
        err = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
        return rc, err

    def test_the_image_serves_as_nonroot_and_stops_cleanly(self):
        volume = os.path.join(self.tmp, "volume")
        os.mkdir(volume)
        os.chown(volume, UID, UID)
        proc, channel, how, seconds = self.start(volume)
        kv = kv_pb2_grpc.KVStub(channel)
        try:
            self.assertEqual(self.server_uid(proc), {UID})
            kv.Put(kv_pb2.PutRequest(key=b"from-the-image", value=b"v" * 4000, sync=True),
                   timeout=30)
            got = kv.Get(kv_pb2.GetRequest(key=b"from-the-image"), timeout=30)
            self.assertTrue(got.found)
        finally:
            rc, err = self.stop(proc, channel)
        self.assertEqual(rc, 0, err)
        self.assertIn("stopped cleanly", err)
        print(f"{how}: start to SERVING in {seconds:.2f} s", file=sys.stderr)
        self.assertTrue(os.listdir(volume), "nothing written to the volume")
        proc, channel, how, seconds = self.start(volume)
        try:
            got = kv_pb2_grpc.KVStub(channel).Get(kv_pb2.GetRequest(key=b"from-the-image"),
                                                  timeout=30)
            self.assertEqual(got.value, b"v" * 4000)
        finally:
            rc, err = self.stop(proc, channel)
        self.assertEqual(rc, 0, err)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    RUNFILES = sys.argv.pop(1)
    with open(os.path.join(RUNFILES, "VERSION")) as f:
        VERSION = f.read().strip()
    if os.geteuid() != 0:
        sys.exit("image_test needs root (chroot, bind mounts, podman's storage)")
    unittest.main(verbosity=2)
