"""The provider registry: every sub-package with a ``client`` module is a provider.

A vendor package ``providers/<name>/`` holds ``client.py`` (one :class:`BaseProvider` subclass)
and ``emulator.py`` (an ``EMULATOR`` :class:`~providers.emulation.EmulatorSpec`). Adding a vendor
is adding such a package; nothing here names one.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass
from functools import cache

from gateway.domain import ProviderId
from providers.base import BaseProvider
from providers.emulation import EmulatorSpec


@dataclass(frozen=True)
class ProviderEntry:
    """One registered vendor: its client class and its emulator."""

    package: str
    client: type[BaseProvider]
    emulator: EmulatorSpec


@cache
def registry() -> dict[ProviderId, ProviderEntry]:
    """Every provider package below ``providers/``, by provider id."""
    found: dict[ProviderId, ProviderEntry] = {}
    for module in pkgutil.iter_modules(__path__):
        if not module.ispkg:
            continue
        client_module = importlib.import_module(f"{__name__}.{module.name}.client")
        emulator_module = importlib.import_module(f"{__name__}.{module.name}.emulator")
        classes = [
            obj
            for obj in vars(client_module).values()
            if inspect.isclass(obj)
            and issubclass(obj, BaseProvider)
            and obj is not BaseProvider
            and obj.__module__ == client_module.__name__
        ]
        if len(classes) != 1:
            raise RuntimeError(f"{client_module.__name__} must define exactly one provider class")
        spec = emulator_module.EMULATOR
        if not isinstance(spec, EmulatorSpec):
            raise RuntimeError(f"{emulator_module.__name__}.EMULATOR must be an EmulatorSpec")
        found[classes[0].id] = ProviderEntry(module.name, classes[0], spec)
    return found


def provider_class(provider: ProviderId) -> type[BaseProvider]:
    """The client class of ``provider``; ``KeyError`` when no package implements it."""
    return registry()[provider].client
