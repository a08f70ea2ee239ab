"""The vLLM plugin (issue 15) against the real vllm package: vLLM's own plugin loader
(``load_general_plugins``, ``VLLM_PLUGINS`` naming ours) registers the resolver, and
``await resolve_lora(...)`` answers a ``LoRARequest`` whose path holds the record's exact files
for an id, an alias and ``best:<task>``, or None (one warning line) for an unknown name, a
prefix, another base model, a tampered file and a missing registry; it keeps working after
each. On SQLite and on PostgreSQL where a registry is involved."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import vllm.plugins
from vllm.entrypoints.openai.models.protocol import BaseModelPath
from vllm.entrypoints.openai.models.serving import OpenAIServingModels
from vllm.entrypoints.serve.lora.protocol import UnloadLoRAAdapterRequest
from vllm.lora.request import LoRARequest
from vllm.lora.resolver import LoRAResolver, LoRAResolverRegistry

from adapter_registry import AdapterRecord, AdapterRegistry
from adapter_registry._lora_files import QWEN_7B, lora_bytes, lora_config
from adapter_registry.vllm_plugin import BASE_MODEL_ENV, RESOLVER_NAME

BASE = "tiny/qwen2-2layer"  # lora_config()'s base_model_name_or_path
LOCAL_PATH = "/models/qwen2-tiny"  # what vLLM passes when it serves a local checkout


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_plugins(monkeypatch: pytest.MonkeyPatch) -> LoRAResolver:
    """vLLM's own loader, fresh: plugins not yet loaded in this process, no resolver yet."""
    monkeypatch.setenv("VLLM_PLUGINS", RESOLVER_NAME)
    monkeypatch.setattr(vllm.plugins, "plugins_loaded", False)
    monkeypatch.setattr(LoRAResolverRegistry, "resolvers", {})
    vllm.plugins.load_general_plugins()
    return LoRAResolverRegistry.get_resolver(RESOLVER_NAME)


@pytest.fixture
def resolver(
    registry: AdapterRegistry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[LoRAResolver]:
    """The plugin, loaded by vLLM, configured by RUNE_HOME/RUNE_DB_URL as the CLI is."""
    monkeypatch.setenv("RUNE_HOME", str(registry.root.parent))
    monkeypatch.setenv("RUNE_DB_URL", registry.db_url)
    monkeypatch.delenv(BASE_MODEL_ENV, raising=False)
    # vLLM's own filesystem resolver would register with this set; VLLM_PLUGINS leaves it out.
    monkeypatch.setenv("VLLM_LORA_RESOLVER_CACHE_DIR", str(tmp_path))
    found = load_plugins(monkeypatch)
    yield found
    found.close()  # type: ignore[attr-defined]  # its registry's connections


def resolve(resolver: LoRAResolver, name: str, base: str = BASE) -> LoRARequest | None:
    return asyncio.run(resolver.resolve_lora(base, name))


def assert_request(
    request: LoRARequest | None, name: str, registry: AdapterRegistry, record: AdapterRecord
) -> None:
    assert isinstance(request, LoRARequest)
    assert request.lora_name == name
    path = Path(request.lora_path)
    assert path == registry.root / record.id
    assert sha256(path / "adapter_model.safetensors") == record.file_hash
    assert sha256(path / "adapter_config.json") == record.config_hash
    assert request.lora_int_id == registry.resolve(record.id).lora_int_id


def refused(caplog: pytest.LogCaptureFixture, name: str) -> str:
    """The one warning line the plugin logged for ``name``, cleared for the next."""
    lines = [r.getMessage() for r in caplog.records if r.name == "adapter_registry.vllm_plugin"]
    caplog.clear()
    assert len(lines) == 1, lines
    assert repr(name) in lines[0] and "\n" not in lines[0]
    return lines[0]


def test_vllms_loader_registers_our_resolver_and_only_what_vllm_plugins_names(
    resolver: LoRAResolver,
) -> None:
    assert isinstance(resolver, LoRAResolver)
    assert set(LoRAResolverRegistry.get_supported_resolvers()) == {RESOLVER_NAME}


def test_an_id_an_alias_and_best_resolve_to_requests_of_the_exact_files(
    resolver: LoRAResolver, store_one: Any, registry: AdapterRegistry
) -> None:
    low, high = store_one(seed=1, fitness_score=0.3), store_one(seed=2, fitness_score=0.8)
    store_one(seed=3, fitness_score=0.99, base_model_id=QWEN_7B)  # the best, of another base
    registry.set_alias("production", low.id)
    for name, record in ((low.id, low), ("production", low), ("best:bug-fix", high)):
        assert_request(resolve(resolver, name), name, registry, record)


def test_refusals_are_none_with_one_line_and_the_resolver_keeps_working(
    resolver: LoRAResolver,
    store_one: Any,
    registry: AdapterRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good, tampered = store_one(seed=1, fitness_score=0.5), store_one(seed=2)
    registry.set_alias("production", good.id)
    registry.set_alias("canary", tampered.id)
    weights = Path(tampered.file_path)
    os.chmod(weights, 0o644)
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    caplog.set_level(logging.WARNING, logger="adapter_registry.vllm_plugin")
    cases = [
        ("nightly", BASE, "no adapter id, alias"),  # unknown alias
        ("0f0f0f0f-0000-4000-8000-000000000000", BASE, "not registered"),  # unknown id
        (good.id[:8], BASE, "no adapter id, alias"),  # a prefix is never a name
        ("best:refactor", BASE, "no evaluated live adapter"),
        (good.id, QWEN_7B, f"trained on {BASE!r}"),  # another base model
        ("best:bug-fix", QWEN_7B, "no evaluated live adapter"),
        ("production", LOCAL_PATH, f"not on {LOCAL_PATH!r}"),
        (tampered.id, BASE, "does not match its record"),
        ("canary", BASE, "does not match its record"),
    ]
    for name, base, why in cases:
        assert resolve(resolver, name, base) is None
        assert why in refused(caplog, name)
        for working in (good.id, "production", "best:bug-fix"):
            assert_request(resolve(resolver, working), working, registry, good)
        assert not caplog.records


def test_the_base_model_setting_maps_vllms_model_to_a_base_model_id(
    resolver: LoRAResolver,
    store_one: Any,
    registry: AdapterRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record = store_one(seed=1, fitness_score=0.5)
    assert resolve(resolver, record.id, LOCAL_PATH) is None  # equality: a path is not the id
    monkeypatch.setenv(BASE_MODEL_ENV, BASE)
    for name in (record.id, "best:bug-fix"):
        assert_request(resolve(resolver, name, LOCAL_PATH), name, registry, record)
    monkeypatch.setenv(BASE_MODEL_ENV, QWEN_7B)  # the setting wins over vLLM's name
    assert resolve(resolver, record.id, BASE) is None


def test_it_never_creates_a_registry_and_finds_one_made_later(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("RUNE_HOME", str(home))
    monkeypatch.delenv("RUNE_DB_URL", raising=False)
    monkeypatch.delenv(BASE_MODEL_ENV, raising=False)
    found = load_plugins(monkeypatch)
    caplog.set_level(logging.WARNING, logger="adapter_registry.vllm_plugin")
    assert resolve(found, "production") is None
    assert "no registry at" in refused(caplog, "production")
    assert not home.exists()
    with AdapterRegistry(home=home) as registry:
        record = registry.store(lora_bytes(seed=1), config=lora_config(), task_type="bug-fix",
                                source="manual", session_id="s")  # fmt: skip
        registry.set_alias("production", record.id)
        assert_request(resolve(found, "production"), "production", registry, record)
    found.close()  # type: ignore[attr-defined]


def test_hashing_runs_off_the_event_loop(
    resolver: LoRAResolver, store_one: Any, registry: AdapterRegistry
) -> None:
    record = store_one(seed=1)
    hashed_on: list[int] = []

    def profile(_frame: Any, what: str, arg: Any) -> None:
        if what == "c_call" and getattr(arg, "__qualname__", None) == "verify_adapters":
            hashed_on.append(threading.get_ident())

    async def resolve_on_the_loop() -> tuple[int, LoRARequest | None]:
        return threading.get_ident(), await resolver.resolve_lora(BASE, record.id)

    threading.setprofile(profile)  # the loop's worker threads are new: they take it
    sys.setprofile(profile)
    try:
        loop_thread, request = asyncio.run(resolve_on_the_loop())
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    assert_request(request, record.id, registry, record)
    assert hashed_on and loop_thread not in hashed_on


def test_a_moved_alias_stays_loaded_in_vllm_until_unloaded(
    resolver: LoRAResolver, store_one: Any, registry: AdapterRegistry
) -> None:
    """vLLM's OpenAI server (its OpenAIServingModels, on a stand-in engine that accepts every
    adapter) keeps a resolved name; unloading the name makes it ask the resolver again."""
    first, second = store_one(seed=1), store_one(seed=2)
    registry.set_alias("production", first.id)
    added: list[str] = []

    async def add_lora(request: LoRARequest) -> bool:
        added.append(request.lora_path)
        return True

    engine = SimpleNamespace(
        model_config=SimpleNamespace(model=BASE, max_model_len=2048),
        renderer=None, input_processor=None, add_lora=add_lora,
    )  # fmt: skip

    async def play() -> list[str]:
        models = OpenAIServingModels(engine, [BaseModelPath(name="qwen", model_path=BASE)])  # type: ignore[arg-type]
        paths = []
        for step in ("resolve", "move", "resolve", "unload", "resolve"):
            if step == "move":
                registry.set_alias("production", second.id)
            elif step == "unload":
                done = await models.unload_lora_adapter(
                    UnloadLoRAAdapterRequest(lora_name="production")
                )
                assert isinstance(done, str) and done.startswith("Success"), done
            else:
                request = await models.resolve_lora("production")
                assert isinstance(request, LoRARequest), request
                paths.append(request.lora_path)
        return paths

    paths = asyncio.run(play())
    old, new = str(registry.root / first.id), str(registry.root / second.id)
    assert paths == [old, old, new]  # cached until unloaded, then the alias's new adapter
    assert added == [old, new]


NO_VLLM = textwrap.dedent(
    """
    import sys

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("vllm", "torch", "peft", "transformers"):
                raise ImportError(f"{name} is forbidden in this test")

    sys.meta_path.insert(0, Refuse())
    from adapter_registry import AdapterRegistry
    from adapter_registry import vllm_plugin
    from adapter_registry.cli import serve

    with AdapterRegistry(root=sys.argv[1], db_url=sys.argv[2], create=False) as registry:
        print(registry.resolve(sys.argv[3]).lora_int_id)
    """
)


def test_the_plugin_module_and_resolve_import_no_vllm_or_torch(
    store_one: Any, registry: AdapterRegistry
) -> None:
    record = store_one(seed=1)
    done = subprocess.run(
        [sys.executable, "-c", NO_VLLM, str(registry.root), registry.db_url, record.id],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == registry.resolve(record.id).lora_int_id
