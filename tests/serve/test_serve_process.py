"""``sparkvision serve`` as a real uvicorn process: stalled clients, disconnects and SIGTERM.

These need the real server (its connection protocol, its signal handling), so each module-level
server is a subprocess over the tiny colour model, driven with raw sockets.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from serve_helpers import png_bytes

pytest.importorskip("uvicorn")


@contextmanager
def running_server(model: Path, log: Path, *extra: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Start ``sparkvision serve`` on a free port; yield the process and its port once ready."""
    import httpx

    command = [sys.executable, "-c", "from sparkvision.cli import main; main()", "serve", "-m", str(model)]
    command += ["--port", "0", "--log-level", "info", *extra]
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=sink, text=True)
    try:
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, f"no URL printed: {line!r}; log: {log.read_text()}"
        port = int(match.group(1))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        else:
            raise AssertionError(f"the server did not become ready; log: {log.read_text()}")
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


@pytest.fixture(scope="module")
def server(colour_model, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with running_server(colour_model, log, "--header-timeout", "1", "--body-timeout", "1") as (_, port):
        yield port, log


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (socket timeout: 10 s)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _head(length: int, content_type: str = "image/png") -> bytes:
    return (
        f"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def test_a_client_that_never_finishes_its_headers_is_disconnected(server):
    port, _ = server
    with _connect(port) as sock:
        sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        started = time.monotonic()
        assert _read_until_closed(sock) == b""  # closed without an answer
        assert 0.8 < time.monotonic() - started < 5
    with _connect(port) as idle:  # connected, silent
        started = time.monotonic()
        assert _read_until_closed(idle) == b""
        assert time.monotonic() - started < 5


def test_a_client_that_stalls_in_its_body_gets_408_and_is_disconnected(server):
    port, _ = server
    data = png_bytes((200, 10, 10))
    with _connect(port) as sock:
        sock.sendall(_head(len(data)) + data[: len(data) // 2])
        started = time.monotonic()
        answer = _read_until_closed(sock)
        assert 0.8 < time.monotonic() - started < 5
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"code":"request_timeout"' in answer and b"connection: close" in answer.lower()


def test_a_client_disconnect_is_one_log_line(server):
    port, log = server
    data = png_bytes((200, 10, 10), (400, 300))
    with _connect(port) as sock:
        sock.sendall(_head(len(data)) + data[:100])
        time.sleep(0.2)
    time.sleep(0.5)
    with _connect(port) as sock:  # the server goes on: a full request is answered
        sock.sendall(_head(len(data)) + data)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    text = log.read_text()
    assert len([line for line in text.splitlines() if "disconnected during POST /v1/classify" in line]) == 1
    assert "Traceback" not in text and "Exception" not in text, text


def test_sigterm_with_a_stalled_upload_exits_within_the_deadline(colour_model, tmp_path):
    log = tmp_path / "server.log"
    args = ("--body-timeout", "120", "--shutdown-timeout", "2")
    with running_server(colour_model, log, *args) as (process, port), _connect(port) as sock:
        sock.sendall(_head(100_000) + b"\x89PNG\r\n\x1a\n" + b"\0" * 1000)  # and then nothing
        time.sleep(0.3)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server did not exit within 15 s of SIGTERM; log: {log.read_text()}")
        elapsed = time.monotonic() - started
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 503 ") and b"shutting_down" in answer
    # uvicorn re-raises the signal once shut down, so the exit status says "terminated by SIGTERM".
    assert process.returncode in (0, -signal.SIGTERM)
    assert 1.5 < elapsed < 8, elapsed  # the 2 s deadline, then a prompt exit
    text = log.read_text()
    assert "timeout graceful shutdown exceeded" in text and "Application shutdown complete" in text, text
    assert "Traceback" not in text
