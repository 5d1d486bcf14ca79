"""Serving ASGI apps with uvicorn: several on one event loop (the demo), or in a thread (tests).

Sockets are bound before the servers start, so port 0 gives a free port with no race, and the
caller knows every address before the first request.

Every server is bounded (:class:`ServerLimits`): a client has ``request_read_timeout`` seconds
to send each whole request (request line, headers and body; counted from connecting, or from
the first byte of a kept-alive connection's next request) or its connection is closed; and a
request arriving while ``max_connections`` other connections are open is answered 503 by
uvicorn, which closes that connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerLimits:
    """What one client connection may take of a server."""

    request_read_timeout: float = 10.0
    """Seconds to send one whole request (line, headers, body) before the connection closes."""
    max_connections: int = 1000
    """Connections served at once: a request on a connection beyond them is answered 503."""
    keep_alive: int = 5
    """uvicorn's ``timeout_keep_alive``: idle seconds allowed between kept-alive requests."""


class _Config(uvicorn.Config):
    """uvicorn's config plus the request read timeout its protocol reads."""

    request_read_timeout: float = ServerLimits.request_read_timeout


class _GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for reading each request.

    uvicorn times only the idle gap between kept-alive requests: a client that connects and
    sends nothing, or sends its headers (or body) a byte at a time, holds the connection for
    ever. Here a timer runs while a request is being read (from connecting, or from the first
    byte of the next request) and closes the connection when it fires; it stops once the whole
    request is in.
    """

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.read_timeout = getattr(
            config, "request_read_timeout", ServerLimits.request_read_timeout
        )
        self.read_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvicorn's own signature narrows asyncio.Protocol's to Transport (with its own ignore)
        super().connection_made(transport)  # type: ignore[arg-type]
        self._watch(started=True)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch(started=True)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch(started=False)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def _watch(self, *, started: bool) -> None:
        """Run the timer while the peer is sending a request it has begun (``started``: bytes
        of it arrived, or the connection is new); stop it once the request is whole."""
        reading = self.conn.their_state is h11.SEND_BODY or (
            started and self.conn.their_state is h11.IDLE
        )
        if self.transport.is_closing() or not reading:
            self._stop_timer()
        elif self.read_timer is None:
            self.read_timer = self.loop.call_later(self.read_timeout, self._timed_out)

    def _stop_timer(self) -> None:
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer = None

    def _timed_out(self) -> None:
        self.read_timer = None
        if not self.transport.is_closing():
            log.debug("closing a connection that sent no whole request in %g s", self.read_timeout)
            self.transport.close()


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its owner (several share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Served:
    """An app with its bound socket."""

    app: Any
    sock: socket.socket

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def host(self) -> str:
        return str(self.sock.getsockname()[0])

    @property
    def url(self) -> str:
        host = self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP so that asyncio sets TCP_NODELAY on accepted connections (it checks the
    # socket's proto); with 0, kept-alive requests wait ~40 ms for delayed acknowledgements.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _server(app: Any, log_level: str, limits: ServerLimits) -> _QuietServer:
    # log_config=None: uvicorn logs through the root logger (and its secret redaction).
    config = _Config(
        app,
        http=_GuardedH11Protocol,
        log_level=log_level,
        log_config=None,
        lifespan="on",
        access_log=False,
        timeout_graceful_shutdown=3,
        timeout_keep_alive=limits.keep_alive,
        # uvicorn answers 503 once its open connections (this one included) reach the limit
        limit_concurrency=limits.max_connections + 1,
    )
    config.request_read_timeout = limits.request_read_timeout
    return _QuietServer(config)


async def serve_all(
    apps: Sequence[Served],
    *,
    log_level: str = "warning",
    stop: asyncio.Event | None = None,
    limits: ServerLimits = ServerLimits(),
) -> None:
    """Serve every app until SIGINT/SIGTERM (or ``stop``), then shut all of them down.

    ``log_level`` is uvicorn's (its start and stop lines are at info, once per app).
    """
    servers = [_server(item.app, log_level, limits) for item in apps]
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    async def watch() -> None:
        await stop.wait()
        for server in servers:
            server.should_exit = True

    watcher = asyncio.create_task(watch())
    try:
        await asyncio.gather(
            *(server.serve(sockets=[item.sock]) for server, item in zip(servers, apps, strict=True))
        )
    finally:
        watcher.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


class ServerThread:
    """Serves apps on loopback from a background thread (for tests and benchmarks)."""

    def __init__(
        self, *apps: Any, host: str = "127.0.0.1", limits: ServerLimits = ServerLimits()
    ) -> None:
        self.served = [Served(app, bind(host)) for app in apps]
        self._servers = [_server(item.app, "error", limits) for item in self.served]
        self._thread = threading.Thread(target=self._run, daemon=True, name="server-thread")

    @property
    def urls(self) -> list[str]:
        return [item.url for item in self.served]

    def _run(self) -> None:
        async def main() -> None:
            await asyncio.gather(
                *(
                    server.serve(sockets=[item.sock])
                    for server, item in zip(self._servers, self.served, strict=True)
                )
            )

        asyncio.run(main())

    def start(self) -> ServerThread:
        self._thread.start()
        for server in self._servers:
            while not server.started:
                if not self._thread.is_alive():
                    raise RuntimeError("server thread died during startup")
                threading.Event().wait(0.01)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.should_exit = True
        self._thread.join(timeout=10)
        for item in self.served:
            item.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
