"""JSON lines served on a local websocket (`vavl stream --serve-ws PORT`).

    server = LineServer("127.0.0.1", 8765)     # needs `websockets` (pip install "vavl[stream]")
    server.publish(json.dumps(line))            # from the scoring loop; never blocks
    server.close()                              # sends what the clients still hold, then closes them

The server runs an asyncio loop in a daemon thread. Every client that connects gets every line
published from then on, one websocket text message per line. Each client has its own bounded queue:
a client that reads slower than the lines come loses its oldest queued lines (counted per client;
before its next line it gets {"event": "dropped", "lines": n}), so a slow client never holds up the
scoring or the other clients. Messages clients send are ignored.
"""
from __future__ import annotations

import asyncio
import collections
import json
import threading
from typing import Any

from ..core.errors import ConfigError

INSTALL = 'the websocket output needs the websockets package: pip install "vavl[stream]"'


def parse_address(text: str) -> tuple[str, int]:
    """"PORT" or "HOST:PORT" (IPv6 in brackets) -> (host, port); 127.0.0.1 unless a host is given."""
    host, sep, port = str(text).rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535 or (sep and not host):
        raise ConfigError(f"--serve-ws {text!r}: give PORT or HOST:PORT, e.g. 8765 or 127.0.0.1:8765 (0: any free port)")
    return host, number


class _Client:
    def __init__(self, connection, size: int):
        self.connection = connection
        self.lines: collections.deque[str] = collections.deque(maxlen=size)
        self.ready = asyncio.Event()
        self.dropped = 0     # lines lost in all
        self.unreported = 0  # lines lost since the last "dropped" notice
        self.closing = False


class LineServer:
    """A websocket server on host:port (port 0: a free one, then `port` says which) in a thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, queue_size: int = 64):
        try:
            from websockets.asyncio.server import serve
        except ImportError:
            raise ConfigError(INSTALL) from None
        self.host, self.queue_size = host, queue_size
        self.clients: set[_Client] = set()
        self.dropped: dict[str, int] = {}   # client address -> lines it lost (clients that lost any)
        self.served = 0                     # clients that connected
        self._connected = threading.Condition()
        self.loop = asyncio.new_event_loop()
        started: dict[str, Any] = {}
        ready = threading.Event()

        async def start():
            try:
                self._server = await serve(self._handler, host, port, max_size=2 ** 16)
                started["port"] = self._server.sockets[0].getsockname()[1]
            except OSError as e:
                started["error"] = e
            ready.set()

        def run():
            asyncio.set_event_loop(self.loop)
            self.loop.create_task(start())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True, name="vavl-stream-ws")
        self.thread.start()
        ready.wait()
        if "error" in started:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            raise ConfigError(f"--serve-ws {host}:{port}: cannot listen ({started['error'].strerror or started['error']}); "
                              "pick another port") from None
        self.port: int = started["port"]

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def _handler(self, connection) -> None:
        client = _Client(connection, self.queue_size)
        self.clients.add(client)
        with self._connected:
            self.served += 1
            self._connected.notify_all()
        try:
            while True:
                await client.ready.wait()
                client.ready.clear()
                while client.lines:
                    if client.unreported:
                        notice, client.unreported = json.dumps({"event": "dropped", "lines": client.unreported}), 0
                        await connection.send(notice)
                    await connection.send(client.lines.popleft())
                if client.closing:
                    break
            await connection.close()
        except Exception:   # the client went away (ConnectionClosed) or broke: forget it, the others go on
            pass
        finally:
            self.clients.discard(client)
            if client.dropped:
                address = connection.remote_address
                self.dropped[f"{address[0]}:{address[1]}" if address else str(id(client))] = client.dropped

    def _publish(self, line: str) -> None:
        for client in list(self.clients):
            if len(client.lines) == client.lines.maxlen:   # the deque drops its oldest line on append
                client.dropped += 1
                client.unreported += 1
            client.lines.append(line)
            client.ready.set()

    def publish(self, line: str) -> None:
        """Queue one line for every connected client (thread-safe, returns at once)."""
        self.loop.call_soon_threadsafe(self._publish, line)

    def wait_for_clients(self, n: int, timeout: float | None = None) -> bool:
        """Block until n clients have connected (True) or `timeout` seconds passed (False)."""
        with self._connected:
            return self._connected.wait_for(lambda: self.served >= n, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Let every client receive what it holds (up to `timeout` seconds), close it, stop listening."""
        async def finish():
            for client in list(self.clients):   # each handler sends what its client holds, then closes (1000)
                client.closing = True
                client.ready.set()
            deadline = self.loop.time() + timeout
            while self.clients and self.loop.time() < deadline:
                await asyncio.sleep(0.02)
            self._server.close()   # stops listening; a client still busy after `timeout` is closed (1001)
            await self._server.wait_closed()

        if self.loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(finish(), self.loop).result(timeout + 5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()
