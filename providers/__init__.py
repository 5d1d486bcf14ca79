"""The provider registry: every sub-package with a ``client`` module is a provider.

A vendor package ``providers/<name>/`` holds ``client.py`` (one :class:`BaseProvider` subclass,
which declares the provider's ``id``) and ``emulator.py`` (an ``EMULATOR``
:class:`~providers.emulation.EmulatorSpec`). Adding a vendor is adding such a package; nothing
here names one. The registry is the one list of vendors: provider ids, the config's choices and
the graph's ``Provider`` enum all come from it.

Only the ``client`` modules are imported to build the registry, so a gateway serving a config
never loads an emulator: :attr:`ProviderEntry.emulator` imports the package's ``emulator``
module (and ``providers.emulation``) on first use, for ``demo``, ``emulator`` and the tests.

The package's path is extended (:func:`pkgutil.extend_path`) with the ``providers/`` directory
of every other ``sys.path`` entry, so a vendor package may also live outside this repository:
``<dir>/providers/<vendor>/`` (with no ``<dir>/providers/__init__.py``) and ``<dir>`` on
``PYTHONPATH``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from gateway.domain import ProviderId
from providers.base import BaseProvider

if TYPE_CHECKING:
    from providers.emulation import EmulatorSpec

# Absolute paths, once each (a '' entry of sys.path would add this directory again, relatively).
__path__ = list(dict.fromkeys(os.path.abspath(p) for p in pkgutil.extend_path(__path__, __name__)))

_ID = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class ProviderEntry:
    """One registered vendor: its package (``providers.<package>``) and its client class."""

    package: str
    client: type[BaseProvider]

    @property
    def emulator(self) -> EmulatorSpec:
        """The vendor's emulator, imported on first use (never by the serving path)."""
        return _emulator(self.package)


@cache
def _emulator(package: str) -> EmulatorSpec:
    from providers.emulation import EmulatorSpec

    module = importlib.import_module(f"{__name__}.{package}.emulator")
    spec = getattr(module, "EMULATOR", None)
    if not isinstance(spec, EmulatorSpec):
        raise RuntimeError(f"{module.__name__}.EMULATOR must be an EmulatorSpec")
    return spec


def _client_class(package: str) -> type[BaseProvider]:
    module = importlib.import_module(f"{__name__}.{package}.client")
    classes = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, BaseProvider)
        and obj is not BaseProvider
        and obj.__module__ == module.__name__
    ]
    if len(classes) != 1:
        raise RuntimeError(f"{module.__name__} must define exactly one provider class")
    client = classes[0]
    pid = getattr(client, "id", None)
    if not isinstance(pid, str) or not _ID.match(pid):
        raise RuntimeError(
            f"{module.__name__}.{client.__name__}.id must be lower-case letters, digits and '_', "
            f"starting with a letter (got {pid!r})"
        )
    description = getattr(client, "description", None)
    if not isinstance(description, str) or not description.strip():
        raise RuntimeError(f"{module.__name__}.{client.__name__} needs a description")
    return client


@cache
def registry() -> dict[ProviderId, ProviderEntry]:
    """Every provider package below ``providers/`` (on any ``sys.path`` entry), by id, sorted."""
    found: dict[ProviderId, ProviderEntry] = {}
    for module in pkgutil.iter_modules(__path__):
        if not module.ispkg:
            continue
        client = _client_class(module.name)
        if client.id in found:
            raise RuntimeError(
                f"providers {found[client.id].package!r} and {module.name!r} "
                f"both declare the id {client.id!r}"
            )
        found[client.id] = ProviderEntry(module.name, client)
    return dict(sorted(found.items()))


def provider_class(provider: ProviderId) -> type[BaseProvider]:
    """The client class of ``provider``; ``KeyError`` when no package implements it."""
    return registry()[provider].client
