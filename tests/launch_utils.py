"""Helpers for tests that start several processes."""
import socket


def free_port() -> int:
    """A TCP port nobody listens on now: two multi-process tests running side by side (pytest -n 2)
    must not both rendezvous on accelerate's default 29500."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
