"""The browser files the gateway serves at ``/static/``, from the installed package.

``gateway/static/`` holds the pages' own scripts and styles and, under ``vendor/``, the browser
libraries copied from npm by ``make assets`` (``vendor/MANIFEST.json`` lists them). Every file
is answered with a one-year, immutable cache lifetime, so a page names each file with
:func:`asset_url`, whose ``?v=`` (the start of the file's SHA-256) changes when the file does:
a browser never uses a stale copy and never asks twice for a current one.
"""

from __future__ import annotations

import functools
import hashlib
import mimetypes
from pathlib import Path
from typing import Any

from litestar import Request, Response, Router
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import NotFoundException
from litestar.static_files import create_static_files_router

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PATH = "/static"
ONE_YEAR = 365 * 24 * 3600

# The static files' Content-Type comes from the mimetypes registry, which reads the system's
# /etc/mime.types when there is one: scripts are text/javascript (RFC 9239) wherever we run.
mimetypes.add_type("text/javascript", ".js")


@functools.cache
def asset_url(name: str) -> str:
    """The URL of ``gateway/static/<name>``, versioned by its content:
    ``/static/vendor/react/react.production.min.js?v=d949f1c3687a4a3e``.

    A ``name`` that is no file under ``gateway/static`` is a ``FileNotFoundError`` (a page that
    names a missing file fails when it is first rendered, not in a user's browser).
    """
    path = (STATIC_DIR / name).resolve()
    if not path.is_relative_to(STATIC_DIR) or not path.is_file():
        raise FileNotFoundError(f"no static file {name!r} in {STATIC_DIR}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return f"{STATIC_PATH}/{path.relative_to(STATIC_DIR).as_posix()}?v={digest}"


def not_found(request: Request[Any, Any, Any], exc: NotFoundException) -> Response[Any]:
    """A 404 naming the path asked for (Litestar's own names the directory on the server)."""
    return Response(
        {"errors": [{"message": f"Not Found ({request.method} {request.url.path})"}]},
        status_code=exc.status_code,
    )


def static_files() -> Router:
    """GET and HEAD ``/static/<path>``: the files under ``gateway/static``, cached a year."""
    return create_static_files_router(
        path=STATIC_PATH,
        directories=[STATIC_DIR],
        cache_control=CacheControlHeader(max_age=ONE_YEAR, public=True, immutable=True),
        exception_handlers={NotFoundException: not_found},
        include_in_schema=False,
    )
