"""check_api: reachability and credentials of a Prefect API, each failure naming the fix
(a tiny local HTTP server stands in for Prefect; the real one is in test_e2e_server.py)."""

from __future__ import annotations

import base64
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from hilnas.flows.server import PrefectSetupError, check_api

AUTH = "admin:s3cret"


class _Api(BaseHTTPRequestHandler):
    def do_GET(self):
        expected = "Basic " + base64.b64encode(AUTH.encode()).decode()
        if self.path == "/api/health":
            code = 200
        elif self.path == "/api/admin/version":
            code = 200 if self.headers.get("Authorization") == expected else 401
        else:
            code = 404
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b'"3.8.8"')

    def log_message(self, *args):
        pass


@pytest.fixture
def api():
    server = HTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api"
    yield url
    server.shutdown()


def _settings(**env):
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    values = {PREFECT_API_URL: env.get("url"), PREFECT_API_AUTH_STRING: env.get("auth")}
    return temporary_settings(
        updates={k: v for k, v in values.items() if v is not None},
        restore_defaults={k for k, v in values.items() if v is None},
    )


def test_ephemeral_mode_needs_no_server_but_an_agent_does():
    with _settings():
        assert check_api() is None
        with pytest.raises(
            PrefectSetupError, match="PREFECT_API_URL is not set.*prefect server start"
        ):
            check_api(require_server=True)


def test_closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with _settings(url=f"http://127.0.0.1:{port}/api"):
        with pytest.raises(PrefectSetupError, match="cannot reach the Prefect API.*unset it"):
            check_api(timeout_s=2)


def test_credentials(api):
    with (
        _settings(url=api),
        pytest.raises(PrefectSetupError, match="refused the credentials.*PREFECT_API_AUTH_STRING"),
    ):
        check_api()
    with _settings(url=api, auth=AUTH):
        assert check_api() == api
    with _settings(url=api.removesuffix("/api")):
        with pytest.raises(PrefectSetupError, match="ends in /api"):
            check_api()
