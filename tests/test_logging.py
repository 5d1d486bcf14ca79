"""Logging as the CLI sets it up (``configure_logging``): stderr, every secret redacted.

Records go through the real handler on stderr (captured at the file descriptor with ``capfd``);
nothing of the logging setup is stubbed.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from gateway.cli import configure_logging
from gateway.settings import parse_settings

USER = "soc-analyst-7"  # 13 bytes: neither its base64 nor the password's lines up in BASIC
PASSWORD = "p@ss/w0rd+Z9="
API_KEY = "ra_live_logging_key"


def forms(secret: str) -> dict[str, str]:
    """``secret`` as it may appear in a log line."""
    return {
        "raw": secret,
        "url-encoded": quote(secret, safe=""),
        "base64": base64.b64encode(secret.encode()).decode(),
    }


BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
"""What an ``Authorization: Basic`` header carries for the ReversingLabs account."""
LEAKS = {
    **{f"password {k}": v for k, v in forms(PASSWORD).items()},
    **{f"api key {k}": v for k, v in forms(API_KEY).items()},
    "user name": USER,
    "basic credentials": BASIC,
}

LOGGERS = ["gateway.upstream", "uvicorn.error", "httpx", "some.library"]


@pytest.fixture
def secrets() -> frozenset[str]:
    """The secrets ``usage-gateway serve`` would redact for a config with two accounts."""
    settings = parse_settings(
        {
            "accounts": [
                {"id": "rl", "provider": "reversinglabs", "username": USER, "password": PASSWORD},
                {"id": "repute", "provider": "reputeapi", "api_key": API_KEY},
            ]
        },
        env={},
    )
    return settings.secret_values


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put back the root handlers and the levels ``configure_logging`` changes."""
    names = ["", "httpx", "httpcore", *LOGGERS]
    levels = {name: logging.getLogger(name).level for name in names}
    handlers = logging.getLogger().handlers[:]
    yield
    logging.getLogger().handlers[:] = handlers
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_settings_collect_the_basic_credentials_as_a_secret(secrets) -> None:
    assert secrets == {USER, PASSWORD, f"{USER}:{PASSWORD}", API_KEY}


@pytest.mark.parametrize("logger", LOGGERS)
def test_every_form_of_every_secret_is_redacted_on_stderr(
    logger, secrets, restore_logging, capfd
) -> None:
    log = logging.getLogger(logger)
    log.setLevel(logging.NOTSET)  # an in-process uvicorn of another test may have set one
    configure_logging("info", secrets)
    for name, leaked in LEAKS.items():
        log.warning(f"in the message ({name}): {leaked}")
        log.warning("in the args (%s): %s", name, leaked)
        try:
            raise RuntimeError(f"in a traceback ({name}): {leaked}")
        except RuntimeError:
            log.exception("in an exception (%s)", name)
    err = capfd.readouterr().err
    for name, leaked in LEAKS.items():
        # neither the form nor its second half (what redacting only a prefix would leave)
        assert leaked not in err and leaked[len(leaked) // 2 :] not in err, f"{name} leaked"
        assert f"WARNING {logger}: in the message ({name}): ********" in err
        assert f"WARNING {logger}: in the args ({name}): ********" in err
        assert f"ERROR {logger}: in an exception ({name})\n" in err
        assert f"RuntimeError: in a traceback ({name}): ********" in err


def test_records_without_secrets_are_untouched_and_httpx_info_is_quiet(
    secrets, restore_logging, capfd
) -> None:
    configure_logging("info", secrets)
    logging.getLogger("gateway.cache").info("cache read failed: %s", "timeout")
    logging.getLogger("httpx").info("HTTP Request: GET http://vendor/?key=%s", API_KEY)
    err = capfd.readouterr().err
    assert "INFO gateway.cache: cache read failed: timeout" in err
    assert "httpx" not in err
