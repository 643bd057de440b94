"""`vavl stream --serve-ws`: a websocket client gets the same lines as the file, and a client that does
not read loses its oldest lines (counted, and told) without holding up the publisher."""
import json
import socket
import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from media_utils import write_face_clip
from vavl.cli import main
from vavl.core.errors import ConfigError
from vavl.inference.ws_lines import LineServer, parse_address


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect_retrying(url: str, deadline: float):
    while True:
        try:
            return connect(url, open_timeout=5)
        except (ConnectionRefusedError, OSError):
            if time.time() > deadline:
                raise
            time.sleep(0.05)


def test_a_websocket_client_gets_the_same_lines_as_the_file(tiny_full_model_dir, tmp_path, one_thread, capsys):
    clip = write_face_clip(tmp_path / "face.mp4", seconds=2.2, fps=10)
    out, port = tmp_path / "lines.jsonl", free_port()
    codes = []
    run = threading.Thread(target=lambda: codes.append(main([
        "stream", str(clip), "--model", tiny_full_model_dir, "--window", "1", "--hop", "0.5", "--out", str(out),
        "--serve-ws", str(port), "--ws-wait", "1"])))
    run.start()
    received = []
    with connect_retrying(f"ws://127.0.0.1:{port}", time.time() + 60) as ws:
        try:
            while True:
                received.append(ws.recv(timeout=120))
        except ConnectionClosed as closed:
            assert closed.rcvd.code == 1000   # closed normally after the last line
    run.join(120)
    assert codes == [0]
    lines = out.read_text().splitlines()
    assert received == lines   # every window line and the end line, byte for byte
    assert len(lines) >= 4 and json.loads(lines[-1])["event"] == "end"
    assert all(json.loads(x)["modalities"] == ["audio", "visual"] for x in lines[:-1])
    assert f"serving the lines on ws://127.0.0.1:{port}" in capsys.readouterr().err


def test_a_client_that_does_not_read_loses_its_oldest_lines_and_is_told():
    server = LineServer("127.0.0.1", 0, queue_size=8)
    n, big = 600, "x" * 50_000   # 30 MB: more than the socket buffers hold
    try:
        with connect(server.url, max_size=2 ** 20) as ws:
            assert server.wait_for_clients(1, timeout=30)
            for i in range(n):   # returns at once: queued for the loop thread
                server.publish(json.dumps({"i": i, "pad": big}))
            deadline = time.time() + 60
            while not any(c.dropped for c in list(server.clients)) and time.time() < deadline:
                time.sleep(0.05)
            (client,) = server.clients
            assert client.dropped > 0 and len(client.lines) <= 8
            got, told = [], 0
            while not got or got[-1] != n - 1:
                message = json.loads(ws.recv(timeout=60))
                if message.get("event") == "dropped":
                    told += message["lines"]
                else:
                    got.append(message["i"])
        assert got == sorted(got) and len(got) + told == n and told == client.dropped
    finally:
        server.close()


def test_serve_ws_addresses_and_refusals(tiny_full_model_dir, capsys):
    assert parse_address("8765") == ("127.0.0.1", 8765)
    assert parse_address("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_address("[::1]:0") == ("::1", 0)
    for bad in ("http", "70000", ":80"):
        with pytest.raises(ConfigError, match="give PORT or HOST:PORT"):
            parse_address(bad)
    taken = LineServer("127.0.0.1", 0)
    try:
        assert main(["stream", "x.mp4", "--model", tiny_full_model_dir, "--serve-ws", str(taken.port)]) == 2
        err = capsys.readouterr().err
        assert f"--serve-ws 127.0.0.1:{taken.port}: cannot listen" in err and len(err.splitlines()) == 1
    finally:
        taken.close()
    assert main(["stream", "x.mp4", "--model", tiny_full_model_dir, "--ws-wait", "1"]) == 2
    assert "give --serve-ws [HOST:]PORT too" in capsys.readouterr().err


def test_without_websockets_the_flag_is_one_line(monkeypatch, tiny_full_model_dir, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "websockets.asyncio.server", None)   # as if not installed
    assert main(["stream", "x.mp4", "--model", tiny_full_model_dir, "--serve-ws", "0"]) == 2
    assert capsys.readouterr().err.strip().endswith('pip install "vavl[stream]"')
