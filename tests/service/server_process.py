"""nokv_server as a child process, for the Python tests.

ServerProcess(binary, data_dir, *flags, listen=...) starts it (on a free port of
127.0.0.1 by default, or a Unix socket with listen="unix:PATH"), waits for the
line it prints once listening and takes the address from it. Its stderr is read
as it comes (stderr_text(), so a test can wait for what the server reports);
stop() sends a signal (SIGTERM: a clean shutdown) and returns the exit status
and all of stderr.
"""

import signal
import subprocess
import threading


class ServerProcess:
    def __init__(self, binary, data_dir, *flags, listen="127.0.0.1:0"):
        self.proc = subprocess.Popen(
            [binary, "--listen=" + listen, "--data_dir=" + data_dir, *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._err = []
        self._err_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.wait()
            self._reader.join()
            raise RuntimeError("server did not start: %r %s" % (line, self.stderr_text()))
        self.line = line  # "nokv-server listening on ADDRESS, data in ..., TLS"
        self.address = line.split("listening on ")[1].split(",")[0]

    def _read_stderr(self):
        for line in self.proc.stderr:
            with self._err_lock:
                self._err.append(line)

    def stderr_text(self):
        with self._err_lock:
            return "".join(self._err)

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=60)
        self._reader.join(timeout=60)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc, self.stderr_text()
