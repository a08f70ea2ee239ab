"""The vLLM plugin: a LoRA resolver that serves the registry's adapters by name.

Installed with the ``vllm`` extra, it is the entry point ``adapter_registry`` of the group
``vllm.general_plugins``; vLLM calls ``register()`` in each of its processes (``VLLM_PLUGINS``,
when set, must name it). vLLM asks resolvers only with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=true``.

A request for model ``NAME`` that vLLM does not know goes to ``resolve_lora(base, NAME)``,
which answers ``registry.resolve(NAME, base_model_id=...)`` (an id, an alias or
``best:<task_type>``; the files verified against the record) as a ``LoRARequest``, or None.

- The registry is named as the CLI's is: ``RUNE_HOME`` (``~/.rune``), ``RUNE_DB_URL``. It is
  opened with ``create=False`` on the first request (and again after a failure): the plugin
  never creates a registry.
- Base model: vLLM passes its ``--model`` (often a local path). ``RUNE_VLLM_BASE_MODEL``, where
  set, is the base model id this engine serves instead; the adapter's ``base_model_id`` must
  equal it (or the name vLLM passes, where it is unset), character for character.
- It never raises into the engine: a name it cannot serve is None and one warning line.
- Hashing runs on a worker thread (``asyncio.to_thread``), never on the event loop.

Importing this module imports neither vllm nor torch; ``register()`` imports vllm.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from functools import cache
from typing import TYPE_CHECKING, Any

from .errors import AdapterRegistryError
from .home import DB_URL_ENV, HOME_ENV, locate

if TYPE_CHECKING:
    from .registry import AdapterRegistry

__all__ = ["BASE_MODEL_ENV", "RESOLVER_NAME", "RegistryResolver", "register", "resolver_type"]

#: The name the resolver is registered under in vLLM's ``LoRAResolverRegistry``.
RESOLVER_NAME = "adapter_registry"
#: The base model id this engine serves, where vLLM's ``--model`` is not it (a local path).
BASE_MODEL_ENV = "RUNE_VLLM_BASE_MODEL"

logger = logging.getLogger(__name__)


class RegistryResolver:
    """Resolves names to verified adapters of the registry that the environment names.

    vLLM's ``LoRAResolver`` is its base in vLLM (``resolver_type()``); this class holds the
    work, so that it is importable without vllm.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._registry: AdapterRegistry | None = None

    def registry(self) -> AdapterRegistry:
        """The registry of ``RUNE_HOME``/``RUNE_DB_URL``, opened once, never created."""
        with self._lock:
            if self._registry is None:
                from .registry import AdapterRegistry

                root, db_url = locate(None, None)
                self._registry = AdapterRegistry(root=root, db_url=db_url, create=False)
            return self._registry

    @staticmethod
    def base_model_id(base_model_name: str) -> str:
        """The base model id an adapter must have to be served on this engine."""
        return os.environ.get(BASE_MODEL_ENV) or base_model_name

    def lora_request(self, base_model_name: str, lora_name: str) -> Any:
        """``resolve()``'s answer as a vLLM ``LoRARequest``; raises as ``resolve()`` does."""
        from vllm.lora.request import LoRARequest

        served = self.registry().resolve(
            lora_name, base_model_id=self.base_model_id(base_model_name)
        )
        return LoRARequest(
            lora_name=lora_name, lora_int_id=served.lora_int_id, lora_path=str(served.directory)
        )

    async def resolve_lora(self, base_model_name: str, lora_name: str) -> Any:
        """A ``LoRARequest`` for a name the registry serves on this base model, else None (and
        one warning line naming the name and why). Never raises."""
        try:
            return await asyncio.to_thread(self.lora_request, base_model_name, lora_name)
        except Exception as err:
            if not isinstance(err, AdapterRegistryError):
                self.close()  # a broken connection, say: open afresh next time
            reason = " ".join(str(err).split()) or type(err).__name__
            logger.warning(
                "adapter_registry: not serving LoRA %r on base model %r: %s",
                lora_name, base_model_name, reason,
            )  # fmt: skip
            return None

    def close(self) -> None:
        """Close the registry's connections; the next request opens it again."""
        with self._lock:
            registry, self._registry = self._registry, None
        if registry is not None:
            registry.close()

    def __repr__(self) -> str:
        home, db_url = os.environ.get(HOME_ENV), os.environ.get(DB_URL_ENV)
        return f"{type(self).__name__}(RUNE_HOME={home!r}, RUNE_DB_URL={db_url is not None})"


@cache
def resolver_type() -> type[RegistryResolver]:
    """``RegistryResolver`` with vLLM's ``LoRAResolver`` among its bases (imports vllm)."""
    from vllm.lora.resolver import LoRAResolver

    class AdapterRegistryResolver(RegistryResolver, LoRAResolver):
        """The registry's resolver, as vLLM's ``LoRAResolverRegistry`` holds it."""

    return AdapterRegistryResolver


def register() -> None:
    """The ``vllm.general_plugins`` entry point: register the resolver (once per process)."""
    from vllm.lora.resolver import LoRAResolver, LoRAResolverRegistry

    if RESOLVER_NAME not in LoRAResolverRegistry.get_supported_resolvers():
        resolver = resolver_type()()
        assert isinstance(resolver, LoRAResolver)
        LoRAResolverRegistry.register_resolver(RESOLVER_NAME, resolver)
