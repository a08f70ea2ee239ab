"""A name to a vLLM LoRARequest (issue 15): our resolver plugin's resolve_lora (the alias
looked up, both files hashed against the record, the seal checked, the content id derived, on
a worker thread) beside vLLM's own filesystem resolver on the same directory (which reads the
config and checks no byte), and beside hashlib.file_digest of the weights alone (the floor of
any check of the bytes). A 16 MiB adapter, cached. What serving verified costs per name; vLLM
resolves a name once, while it stays loaded."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from vllm.lora.request import LoRARequest
from vllm.plugins.lora_resolvers.filesystem_resolver import FilesystemResolver

from adapter_registry import AdapterRegistry
from adapter_registry._lora_files import one_pair
from adapter_registry.vllm_plugin import resolver_type

from conftest import LORA_CONFIG, MIB, run_pedantic, size

GROUP = "resolve a name to a vLLM LoRARequest (16 MiB adapter, cached)"
ROUNDS = 15
CALLS = 5
NAME, BASE = "production", LORA_CONFIG["base_model_name_or_path"]


@contextmanager
def setup(workdir: Path) -> Iterator[tuple[Any, ...]]:
    home = workdir / "home"
    registry = AdapterRegistry(home=home)
    record = registry.store(
        one_pair(size(16, 1) * MIB, 0), config=LORA_CONFIG, task_type="bug-fix",
        source="manual", session_id="b",
    )  # fmt: skip
    registry.set_alias(NAME, record.id)
    Path(record.file_path).read_bytes()  # in the page cache
    cache = workdir / "vllm-lora-cache"  # vLLM's VLLM_LORA_RESOLVER_CACHE_DIR, by name
    cache.mkdir()
    (cache / NAME).symlink_to(record.directory, target_is_directory=True)
    saved = {k: os.environ.get(k) for k in ("RUNE_HOME", "RUNE_DB_URL")}
    os.environ["RUNE_HOME"] = str(home)
    os.environ.pop("RUNE_DB_URL", None)
    ours = resolver_type()()
    loop = asyncio.new_event_loop()
    try:
        yield loop, ours, FilesystemResolver(str(cache)), Path(record.file_path), record
    finally:
        loop.close()
        ours.close()
        registry.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def adapter_registry_plugin(
    loop: asyncio.AbstractEventLoop, ours: Any, vllms: Any, weights: Path, record: Any
) -> bool:
    request = loop.run_until_complete(ours.resolve_lora(BASE, NAME))
    return isinstance(request, LoRARequest) and request.lora_path == str(record.directory)


def vllm_filesystem_resolver(
    loop: asyncio.AbstractEventLoop, ours: Any, vllms: Any, weights: Path, record: Any
) -> bool:
    request = loop.run_until_complete(vllms.resolve_lora(BASE, NAME))
    return isinstance(request, LoRARequest) and Path(request.lora_path).resolve() == Path(
        record.directory
    )


def hashlib_file_digest(
    loop: asyncio.AbstractEventLoop, ours: Any, vllms: Any, weights: Path, record: Any
) -> bool:
    with open(weights, "rb") as f:
        return bool(hashlib.file_digest(f, "sha256").hexdigest() == record.file_hash)


CONTENDERS = [adapter_registry_plugin, vllm_filesystem_resolver, hashlib_file_digest]


@pytest.mark.parametrize("contender", CONTENDERS, ids=lambda f: f.__name__)
def test_resolve_a_name(benchmark: Any, args: Any, contender: Any) -> None:
    assert run_pedantic(benchmark, sys.modules[__name__], contender, args)
