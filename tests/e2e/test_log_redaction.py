"""``usage-gateway serve`` as a process: credentials a vendor echoes never reach its stderr or
its answers.

The vendor here is a loopback HTTP server that rejects every call with a 401 whose message
repeats what it received: the ``Authorization: Basic`` header, and the password URL-encoded and
base64-encoded. The provider blanks every form of the account's secrets in vendor text before it
is shown or logged, and the log redaction the CLI installs stands behind it (tested on its own in
tests/test_logging.py, where nothing else redacts).
"""

from __future__ import annotations

import base64
import json
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.test_demo import cli, read_until

USER = "soc-analyst-7"
PASSWORD = "p@ss/w0rd+Z9="
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
FORMS = {
    "raw password": PASSWORD,
    "url-encoded password": quote(PASSWORD, safe=""),
    "base64 password": base64.b64encode(PASSWORD.encode()).decode(),
    "basic credentials": BASIC,
}


class EchoingVendor(BaseHTTPRequestHandler):
    """Answers 401 with the credentials it was sent, in several encodings."""

    received: list[str | None]

    def do_GET(self) -> None:
        self.received.append(self.headers.get("Authorization"))
        message = (
            f"denied {self.headers.get('Authorization')} "
            f"url={FORMS['url-encoded password']} b64={FORMS['base64 password']}"
        )
        body = json.dumps({"message": message}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def vendor() -> Iterator[tuple[str, list[str | None]]]:
    received: list[str | None] = []
    handler = type("Handler", (EchoingVendor,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_serve_never_logs_a_secret_in_any_encoding(tmp_path: Path, vendor) -> None:
    url, received = vendor
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nhistory_path = "{tmp_path / "history.sqlite"}"\n\n'
        f'[[accounts]]\nid = "rl"\nprovider = "reversinglabs"\nbase_url = "{url}"\n'
        f'username = "{USER}"\npassword = "${{RL_PASSWORD}}"\n',
        encoding="utf-8",
    )
    env = {"RL_PASSWORD": PASSWORD}
    with cli("serve", "--config", str(config), "--port", "0", env=env) as gateway:
        graphql = read_until(gateway, r"^GraphiQL: ")[-1].split(" ", 1)[1]
        query = "{ accounts { id source { state message } } }"
        answer = httpx.post(graphql, json={"query": query}, timeout=30).json()
        gateway.send_signal(signal.SIGINT)
        assert gateway.wait(20) == 0
        _, logged = gateway.communicate(timeout=10)
    (account,) = answer["data"]["accounts"]
    assert account["source"]["state"] == "AUTH_FAILED"
    shown = account["source"]["message"]
    assert "denied Basic ********" in shown and "url=******** b64=********" in shown
    for name, leaked in FORMS.items():
        assert leaked not in json.dumps(answer), f"{name} in the answer: {shown}"
    assert f"Basic {BASIC}" in received  # the vendor was sent the credentials, and echoed them
    # the vendor's message made it into the log, with every form of the secret blanked
    assert (
        "account rl: ReversingLabs rejected the credentials (HTTP 401): denied Basic ********"
        in logged
    )
    assert "url=******** b64=********" in logged
    for name, leaked in FORMS.items():
        assert leaked not in logged, f"{name} in stderr:\n{logged}"
    assert USER not in logged
