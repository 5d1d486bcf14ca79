"""Serving ASGI apps with uvicorn: several on one event loop (the demo), or in a thread (tests).

Sockets are bound before the servers start, so port 0 gives a free port with no race, and the
caller knows every address before the first request.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn


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


def _server(app: Any, log_level: str) -> _QuietServer:
    # log_config=None: uvicorn logs through the root logger (and its secret redaction).
    config = uvicorn.Config(
        app,
        log_level=log_level,
        log_config=None,
        lifespan="on",
        access_log=False,
        timeout_graceful_shutdown=3,
    )
    return _QuietServer(config)


async def serve_all(
    apps: Sequence[Served], *, log_level: str = "warning", stop: asyncio.Event | None = None
) -> None:
    """Serve every app until SIGINT/SIGTERM (or ``stop``), then shut all of them down.

    ``log_level`` is uvicorn's (its start and stop lines are at info, once per app).
    """
    servers = [_server(item.app, log_level) for item in apps]
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

    def __init__(self, *apps: Any, host: str = "127.0.0.1") -> None:
        self.served = [Served(app, bind(host)) for app in apps]
        self._servers = [_server(item.app, "error") for item in self.served]
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
