"""nokv_server as a child process, for the Python tests.

ServerProcess(binary, data_dir, *flags, listen=...) starts it (on a free port of
127.0.0.1 by default, or a Unix socket with listen="unix:PATH"), waits for the
line it prints once listening and takes the address from it; stop() sends a
signal (SIGTERM: a clean shutdown) and returns the exit status and stderr.
"""

import signal
import subprocess


class ServerProcess:
    def __init__(self, binary, data_dir, *flags, listen="127.0.0.1:0"):
        self.proc = subprocess.Popen(
            [binary, "--listen=" + listen, "--data_dir=" + data_dir, *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            err = self.proc.stderr.read()
            self.proc.wait()
            raise RuntimeError("server did not start: %r %s" % (line, err))
        self.line = line  # "nokv-server listening on ADDRESS, data in ..., TLS"
        self.address = line.split("listening on ")[1].split(",")[0]

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=60)
        err = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc, err
