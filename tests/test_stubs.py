"""The stub ``_core.pyi`` against what the core returns at run time. ``mypy.stubtest`` checks
names and signatures but not return values: here every function in the stub is called on real
files and its result, and every constant, is checked against the stub's annotations."""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import adapter_registry
from adapter_registry import _core
from adapter_registry._lora_files import lora_bytes, lora_config

STUB = Path(adapter_registry.__file__).with_name("_core.pyi")
#: Functions the check does not call: a panic and a crash point are tested where they belong.
NOT_CALLED = {"_panic"}
#: The name the stub's classes carry; they stand for the core's classes of the same name.
STUB_MODULE = "adapter_registry._core_stub"


def stub_namespace() -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": STUB_MODULE}
    exec(compile(STUB.read_text(), str(STUB), "exec"), namespace)
    return namespace


def conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of the type ``hint`` names, containers checked element by element."""
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, a) for a in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(conforms(v, args[0]) for v in value)
        return len(value) == len(args) and all(map(conforms, value, args))
    if origin is list:
        return isinstance(value, list) and all(conforms(v, args[0]) for v in value)
    if origin is os.PathLike:
        return isinstance(value, os.PathLike)
    if isinstance(hint, type):
        if hint is int:
            return isinstance(value, int) and not isinstance(value, bool)
        if hint.__module__ == STUB_MODULE:
            hint = getattr(_core, hint.__name__)
        return isinstance(value, hint)
    raise AssertionError(f"no rule for {hint!r}")


def _returns(namespace: dict[str, Any], name: str) -> Any:
    return typing.get_type_hints(namespace[name], localns=namespace)["return"]


def test_the_checker_tells_a_path_from_a_str() -> None:
    assert conforms(("a", [1, 2]), tuple[str, list[int]])
    assert not conforms(Path("x"), str)
    assert not conforms(("a", ["1"]), tuple[str, list[int]])
    assert conforms(None, str | None) and not conforms(True, int)


@pytest.fixture
def calls(tmp_path: Path) -> dict[str, Callable[[], Any]]:
    """One real call of every function in the stub."""
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(lora_bytes())
    root = tmp_path / "root"
    root.mkdir()

    def published() -> Path:
        staged = _core.stage(str(root), "a", str(weights), b"{}")
        return staged.publish("a", b"{}")

    directory = published()
    digest, size = _core.hash_file(str(directory / _core.WEIGHTS_FILE))
    config_digest, _ = _core.hash_file(str(directory / _core.CONFIG_FILE))
    return {
        "hash_file": lambda: _core.hash_file(str(weights)),
        "read_safetensors_header": lambda: _core.read_safetensors_header(str(weights)),
        "open_weights": lambda: _core.open_weights(str(weights)),
        "read_verified": lambda: _core.read_verified(str(weights), weights.stat().st_size),
        "stage": lambda: _core.stage(str(root), "b", weights.read_bytes(), b"{}"),
        "sweep_staging": lambda: _core.sweep_staging(str(root)),
        "sweep_staging_report": lambda: _core.sweep_staging_report(str(root)),
        "verify_files": lambda: _core.verify_files([(str(weights), digest)]),
        "verify_adapters": lambda: _core.verify_adapters(
            str(directory.parent),
            [
                (directory.name, digest, size, config_digest, directory / _core.WEIGHTS_FILE),
                ("gone", "", 0, "", ""),
            ],
        ),
        "seal_problems": lambda: _core.seal_problems(str(directory)),
        "crash_point": lambda: _core.crash_point("staged"),
    }


def test_every_function_returns_what_the_stub_says(
    calls: dict[str, Callable[[], Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(_core.CRASH_AT_ENV, raising=False)
    namespace = stub_namespace()
    functions = {
        n for n in namespace["__all__"] if isinstance(namespace.get(n), types.FunctionType)
    } - NOT_CALLED
    assert functions == set(calls), "every function of the stub is called here"
    for name, call in calls.items():
        result = call()
        assert conforms(result, _returns(namespace, name)), (name, result)


def test_a_staged_adapter_and_its_publish_return_what_the_stub_says(tmp_path: Path) -> None:
    namespace = stub_namespace()
    source = tmp_path / "w.safetensors"
    source.write_bytes(lora_bytes())
    staged = _core.stage(str(tmp_path), "x", str(source), repr(lora_config()).encode())
    cls = namespace["StagedAdapter"]
    for name in ("file_hash", "file_size", "config_hash", "tensors", "path"):
        hint = typing.get_type_hints(getattr(cls, name).fget, localns=namespace)["return"]
        assert conforms(getattr(staged, name), hint), name
    published = staged.publish("x", b"{}")
    opened = _core.open_weights(source.read_bytes())
    opened_cls = namespace["OpenedWeights"]
    for name in ("tensors", "size"):
        hint = typing.get_type_hints(getattr(opened_cls, name).fget, localns=namespace)["return"]
        assert conforms(getattr(opened, name), hint), name
    stage_hint = typing.get_type_hints(opened_cls.stage, localns=namespace)["return"]
    assert conforms(opened.stage(str(tmp_path), "y", b"{}"), stage_hint)
    publish_hint = typing.get_type_hints(cls.publish, localns=namespace)["return"]
    assert conforms(published, publish_hint)
    data, *_ = _core.read_verified(str(source), source.stat().st_size)
    assert conforms(len(data), int)


def test_every_constant_is_what_the_stub_says() -> None:
    namespace = stub_namespace()
    annotated = types.SimpleNamespace(__annotations__=namespace["__annotations__"])
    hints = typing.get_type_hints(annotated)
    constants = [n for n in namespace["__all__"] if n in hints]
    assert {"SEALED_MODE", "VERDICTS", "CRASH_STEPS", "WEIGHTS_FILE"} <= set(constants)
    for name in constants:
        assert conforms(getattr(_core, name), hints[name]), name
