#!/usr/bin/env python3
"""Builds the nokv-c container image from Debian packages and the built binaries.

    build_image.py --out DIR --version V --epoch SECONDS \
        --binary nokv_server=PATH --binary nokv=PATH --binary nokv-remote=PATH

The root filesystem holds exactly:
- the Debian packages that ship the shared libraries the binaries load (their
  `ldd` closure, each library mapped to its package with `dpkg -S`), plus tzdata
  and ca-certificates, as installed on this machine: the very versions the
  binaries were built and tested against, with no network. Each package's files
  are those `dpkg -L` lists, checked first with `dpkg --verify` against the
  checksums its .deb carried (a changed file stops the build); no maintainer
  script runs, so no shell or package manager is needed or included.
  Documentation, manual pages, locales and debugger scripts are left out
  (copyright files stay), and so are every program the packages ship in */bin
  and */sbin and glibc's iconv modules (gconv, 8 MB: conversions beyond glibc's built-in UTF-8, ASCII
  and Latin-1, which nothing in the server does);
- the binaries, stripped, in /usr/local/bin;
- /etc/passwd and /etc/group with `nonroot` (65532), the CA bundle
  (/etc/ssl/certs/ca-certificates.crt, the concatenation update-ca-certificates
  would make), /etc/nsswitch.conf, /etc/localtime (UTC), /data (the volume,
  owned by 65532), /tmp, and the mount points /proc, /sys, /dev and /run;
- /usr/share/nokv/packages.txt: every package and version in the image.

Outputs in DIR: `oci/` (an OCI image layout), `nokv-c-V.oci.tar` (the same as
an archive), `nokv-c-V.docker.tar` (a docker-archive, for `docker load`,
`podman load` and `kind load image-archive`) and `rootfs.tar` (the layer,
uncompressed). Every timestamp is clamped to --epoch, owners are numeric, entries
sorted, gzip without a name or time: the same packages, binaries and epoch give
the same digests.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import time

UID = 65532
EXTRA_PACKAGES = ["tzdata", "ca-certificates"]
USR_MERGED = ("bin", "sbin", "lib", "lib64")
LEFT_OUT = re.compile(
    r"^usr/share/(man|info|lintian|locale|bug|bash-completion|debconf|gcc|gdb)/"
    r"|^usr/share/doc/(?!.*/copyright$)"
    r"|^usr/(local/)?s?bin/"
    r"|^usr/lib/x86_64-linux-gnu/gconv/"
    r"|^etc/(ca-certificates/update\.d|cron|init|logrotate|default)")


def die(msg):
    sys.exit("build_image: " + msg)


def run(*argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw).stdout


def library_packages(binaries):
    """The packages shipping the libraries the binaries load (one `dpkg -S`)."""
    libs = set()
    for b in binaries:
        for line in run("ldd", b).splitlines():
            if "not found" in line:
                die(f"{b}: {line.strip()}")
            m = re.search(r"=> (/\S+)", line) or re.match(r"\s*(/\S+)", line)
            if m:
                libs.add(m.group(1))
    # dpkg knows a file by the path its package gave, which merged /usr may hide.
    names = {}
    for lib in libs:
        for p in {lib, os.path.realpath(lib)}:
            for q in (p, p[len("/usr"):] if p.startswith("/usr/") else "/usr" + p):
                names.setdefault(q, lib)
    r = subprocess.run(["dpkg", "-S", *sorted(names)], capture_output=True, text=True)
    found, packages = set(), set()
    for line in r.stdout.splitlines():
        pkgs, _, path = line.partition(": ")
        if path in names:
            found.add(names[path])
            packages.update(p.strip().split(":")[0] for p in pkgs.split(","))
    if libs - found:
        die(f"no Debian package ships {sorted(libs - found)}")
    return sorted(packages)


def installed_version(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", pkg],
                       capture_output=True, text=True)
    fields = r.stdout.split()
    if r.returncode != 0 or fields[:3] != ["install", "ok", "installed"]:
        die(f"Debian package {pkg} is not installed (run bazel/setup.sh)")
    return fields[3]


def merged(name):
    """A path of a package as it lies in a merged-/usr root filesystem."""
    name = name[2:] if name.startswith("./") else name.lstrip("/")
    top = name.split("/", 1)[0]
    if top in USR_MERGED:
        name = "usr/" + name
    return name.rstrip("/")


class Layer:
    """The root filesystem as tar entries, by path."""

    def __init__(self, epoch):
        self.epoch = epoch
        self.entries = {}  # path -> (TarInfo, bytes or None)

    def add(self, info, data=None, source=""):
        info.mtime = min(int(info.mtime), self.epoch)
        info.uname = info.gname = ""
        old = self.entries.get(info.name)
        if old is not None:
            if info.isdir() and old[0].isdir():
                return
            if old[0].type == info.type and old[1] == data and old[0].linkname == info.linkname:
                return
            die(f"{info.name} comes twice, differently ({source})")
        self.entries[info.name] = (info, data)

    def add_dir(self, path, mode=0o755, uid=0):
        info = tarfile.TarInfo(path)
        info.type = tarfile.DIRTYPE
        info.mode = mode
        info.uid = info.gid = uid
        info.mtime = self.epoch
        self.add(info)

    def add_file(self, path, data, mode=0o644, uid=0):
        info = tarfile.TarInfo(path)
        info.size = len(data)
        info.mode = mode
        info.uid = info.gid = uid
        info.mtime = self.epoch
        self.add(info, data)

    def add_symlink(self, path, target):
        info = tarfile.TarInfo(path)
        info.type = tarfile.SYMTYPE
        info.linkname = target
        info.mode = 0o777
        info.mtime = self.epoch
        self.add(info)

    def add_installed(self, pkg):
        """The files of an installed package, in merged-/usr places."""
        r = subprocess.run(["dpkg", "--verify", pkg], capture_output=True, text=True)
        changed = [l for l in r.stdout.splitlines() if not re.match(r"^\S+ +c ", l)]
        if changed:
            die(f"files of {pkg} differ from its package:\n" + "\n".join(changed))
        left_out = 0
        for path in run("dpkg-query", "-L", pkg).splitlines():
            if not path.startswith("/") or path == "/." or path.strip("/") in USR_MERGED:
                continue
            name = merged(path)
            if not name or name in USR_MERGED:
                continue
            st = os.lstat(path)
            if LEFT_OUT.search(name + ("/" if stat.S_ISDIR(st.st_mode) else "")):
                left_out += 1
                continue
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                self.add_dir(name, mode)
            elif stat.S_ISLNK(st.st_mode):
                self.add_symlink(name, os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    self.add_file(name, f.read(), mode)
            else:
                die(f"{path} ({pkg}) is neither a file, a directory nor a symlink")
        return left_out

    def parents(self):
        """Adds every missing parent directory."""
        for path in list(self.entries):
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                p = "/".join(parts[:i])
                if p not in self.entries:
                    self.add_dir(p)

    def tar(self):
        """The layer: entries sorted so that a directory precedes what it holds."""
        self.parents()
        hardlinked = {e[0].linkname for e in self.entries.values() if e[0].islnk()}
        missing = hardlinked - set(self.entries)
        if missing:
            die(f"hard links to files not in the image: {sorted(missing)[:5]}")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(self.entries, key=lambda p: p.split("/")):
                info, data = self.entries[path]
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return buf.getvalue()


def deterministic_tar(files, epoch):
    """A tar of name -> bytes, in the given order, every field fixed."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
            else:
                info.size = len(data)
                info.mode = 0o644
            info.mtime = epoch
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--revision", default="")
    ap.add_argument("--epoch", type=int, required=True)
    ap.add_argument("--binary", action="append", required=True, help="NAME=PATH")
    args = ap.parse_args()
    binaries = dict(b.split("=", 1) for b in args.binary)
    if "nokv_server" not in binaries:
        die("--binary nokv_server=PATH is required")

    packages = library_packages(binaries.values()) + EXTRA_PACKAGES
    layer = Layer(args.epoch)
    listing = []
    for pkg in sorted(set(packages)):
        version = installed_version(pkg)
        layer.add_installed(pkg)
        listing.append(f"{pkg}={version}")
    for d in USR_MERGED:
        layer.add_symlink(d, "usr/" + d)

    for name, path in sorted(binaries.items()):
        stripped = os.path.join(args.out, ".strip-" + name)
        os.makedirs(args.out, exist_ok=True)
        run("strip", "--strip-unneeded", "-o", stripped, path)
        with open(stripped, "rb") as f:
            layer.add_file(f"usr/local/bin/{name}", f.read(), 0o755)
        os.remove(stripped)

    certs = sorted(p for p, e in layer.entries.items()
                   if p.startswith("usr/share/ca-certificates/") and p.endswith(".crt"))
    if not certs:
        die("ca-certificates shipped no certificate")
    layer.add_file("etc/ssl/certs/ca-certificates.crt",
                   b"".join(layer.entries[p][1] for p in certs))
    layer.add_file("etc/passwd", b"root:x:0:0:root:/root:/usr/sbin/nologin\n"
                   b"nonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin\n")
    layer.add_file("etc/group", b"root:x:0:\nnonroot:x:65532:\n")
    layer.add_file("etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
    layer.add_symlink("etc/localtime", "/usr/share/zoneinfo/Etc/UTC")
    layer.add_file("usr/share/nokv/packages.txt", ("\n".join(listing) + "\n").encode())
    layer.add_dir("data", 0o750, UID)
    layer.add_dir("home/nonroot", 0o750, UID)
    layer.add_dir("root", 0o700)
    layer.add_dir("tmp", 0o1777)
    for mount_point in ("proc", "sys", "dev", "run"):  # the runtime mounts these
        layer.add_dir(mount_point)

    raw = layer.tar()
    gz_buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz_buf, mtime=0, compresslevel=9) as gz:
        gz.write(raw)
    gzipped = gz_buf.getvalue()

    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(args.epoch))
    labels = {
        "org.opencontainers.image.title": "nokv-c",
        "org.opencontainers.image.description":
            "NoKV-C: an LSM key-value engine served over gRPC",
        "org.opencontainers.image.version": args.version,
        "org.opencontainers.image.created": created,
    }
    if args.revision:
        labels["org.opencontainers.image.revision"] = args.revision
    config = canonical({
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {
            "User": f"{UID}:{UID}",
            "Entrypoint": ["/usr/local/bin/nokv_server"],
            "Cmd": ["--listen=0.0.0.0:50051", "--data_dir=/data"],
            "Env": ["PATH=/usr/local/bin:/usr/bin", "TZ=UTC"],
            "WorkingDir": "/data",
            "Volumes": {"/data": {}},
            "ExposedPorts": {"50051/tcp": {}, "9090/tcp": {}},
            "StopSignal": "SIGTERM",
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [sha256(raw)]},
        "history": [{"created": created, "created_by": "deploy/image/build_image.py"}],
    })
    manifest = canonical({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256(gzipped), "size": len(gzipped)}],
    })
    ref = f"nokv-c:{args.version}"
    index = canonical({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": sha256(manifest), "size": len(manifest),
                       "annotations": {"org.opencontainers.image.ref.name": args.version,
                                       "io.containerd.image.name": f"docker.io/library/{ref}"}}],
    })
    layout = canonical({"imageLayoutVersion": "1.0.0"})

    oci_files = [("blobs", None), ("blobs/sha256", None)]
    for blob in sorted([config, manifest, gzipped], key=sha256):
        oci_files.append(("blobs/sha256/" + sha256(blob)[7:], blob))
    oci_files += [("index.json", index), ("oci-layout", layout)]

    out = args.out
    shutil.rmtree(os.path.join(out, "oci"), ignore_errors=True)
    for name, data in oci_files:
        path = os.path.join(out, "oci", name)
        if data is None:
            os.makedirs(path, exist_ok=True)
        else:
            with open(path, "wb") as f:
                f.write(data)
    base = f"nokv-c-{args.version}"
    with open(os.path.join(out, base + ".oci.tar"), "wb") as f:
        f.write(deterministic_tar(oci_files, args.epoch))

    layer_id = sha256(raw)[7:]
    docker_manifest = canonical([{"Config": sha256(config)[7:] + ".json", "RepoTags": [ref],
                                  "Layers": [layer_id + "/layer.tar"]}])
    repositories = canonical({"nokv-c": {args.version: layer_id}})
    with open(os.path.join(out, base + ".docker.tar"), "wb") as f:
        f.write(deterministic_tar([
            (sha256(config)[7:] + ".json", config),
            (layer_id, None),
            (layer_id + "/layer.tar", raw),
            ("manifest.json", docker_manifest),
            ("repositories", repositories),
        ], args.epoch))
    with open(os.path.join(out, "rootfs.tar"), "wb") as f:
        f.write(raw)

    print(f"image {ref}")
    print(f"  manifest {sha256(manifest)}")
    print(f"  layer    {sha256(gzipped)} ({len(gzipped) / 1e6:.1f} MB compressed, "
          f"{len(raw) / 1e6:.1f} MB uncompressed)")
    print(f"  packages {' '.join(listing)}")
    print(f"  {os.path.join(out, 'oci')} (OCI layout), {base}.oci.tar, {base}.docker.tar")


if __name__ == "__main__":
    main()
