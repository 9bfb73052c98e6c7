"""A local HTTP server for the loaders' download tests: nothing here reaches the internet."""

from __future__ import annotations

import functools
import http.server
import pathlib
import threading

import pytest


@pytest.fixture
def server():
    """Serve a folder over HTTP on 127.0.0.1; yields ``start(folder) -> base URL``."""
    servers = []

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    def start(folder: pathlib.Path) -> str:
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}/"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()
