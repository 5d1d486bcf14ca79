"""``usage-gateway serve`` applies ``[gateway]``'s connection limits: a client too slow to send
its request is cut off, and a request beyond ``max_connections`` is answered 503."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from tests.e2e.test_demo import cli, read_until
from tests.test_limits import REQUEST, address, open_until_closed, read_answer


def test_serve_applies_the_read_timeout_and_the_connection_cap(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nhistory_path = "{tmp_path / "history.sqlite"}"\n'
        "request_read_timeout = 1\nmax_connections = 1\n",
        encoding="utf-8",
    )
    with cli("serve", "--config", str(config), "--port", "0") as gateway:
        url = read_until(gateway, r"^GraphiQL: ")[-1].split(" ", 1)[1].removesuffix("/graphql")
        closed_at = open_until_closed(
            url, b"GET /healthz HTTP/1.1\r\nHost: g\r\nX-Slow: ", b"a" * 60
        )
        # 60 bytes at one per 0.2 s would take 12 s; the server closed the connection at ~1 s
        assert closed_at is not None and closed_at < 30

        with socket.create_connection(address(url), timeout=10) as first:
            first.sendall(REQUEST)
            assert read_answer(first).startswith(b"HTTP/1.1 200")  # kept alive: the one allowed
            with socket.create_connection(address(url), timeout=10) as second:
                second.sendall(REQUEST)
                assert read_answer(second).startswith(b"HTTP/1.1 503")
        gateway.send_signal(signal.SIGINT)
        assert gateway.wait(20) == 0
