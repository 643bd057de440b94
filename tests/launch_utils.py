"""Helpers for tests that start several processes."""
import os
import signal
import socket
import subprocess


def free_port() -> int:
    """A TCP port nobody listens on now: two multi-process tests running side by side (pytest -n 2)
    must not both rendezvous on accelerate's default 29500."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(cmd, timeout: float, **kw) -> subprocess.CompletedProcess:
    """`subprocess.run(cmd, capture_output=True, text=True)` in a session of its own: on timeout the
    launcher AND the ranks it started are killed (killing only the launcher would leave the ranks
    running, loading the cores for the rest of the suite), then TimeoutExpired is raised."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **kw) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
