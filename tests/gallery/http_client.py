"""Driving the gallery's HTTP service in tests: a real uvicorn server on 127.0.0.1 and a small
stdlib client (multipart uploads, JSON answers)."""

import contextlib
import io
import json
import socket
import threading
import urllib.error
import urllib.request
import uuid

import uvicorn

from tests.waiting import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(app):
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), what=f"the test server on port {port} to start")
        if not server.started:
            raise AssertionError(f"the test server on port {port} stopped before it started (see its log above)")
        yield f"http://127.0.0.1:{port}", port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def multipart(fields: dict, files: list[tuple[str, str, bytes]]):
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    for name, value in fields.items():
        body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for field, filename, data in files:
        body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                   f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    return body.getvalue(), f"multipart/form-data; boundary={boundary}"


def fetch(url, method="GET", fields=None, files=None, key="secret") -> tuple[int, bytes]:
    """(status, body) of one request, 4xx and 5xx included."""
    data, content_type = multipart(fields or {}, files or []) if (fields or files) else (None, None)
    request = urllib.request.Request(url, data=data, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    if key:
        request.add_header("X-API-Key", key)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def call(url, method="GET", fields=None, files=None, key="secret"):
    """(status, JSON answer) of one request."""
    status, body = fetch(url, method, fields, files, key)
    return status, json.loads(body or b"{}")
