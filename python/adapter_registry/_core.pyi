"""Type stubs of the Rust core, checked against the build by ``mypy.stubtest``."""

from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import final

__all__ = [
    "CONFIG_FILE",
    "CRASH_AT_ENV",
    "CRASH_SIGNAL_ENV",
    "CRASH_STEPS",
    "DIR_MODE",
    "PEFT_WEIGHTS_FILE",
    "RECORD_FILE",
    "SEALED_MODE",
    "STAGING_DIR",
    "STAGING_DIR_MODE",
    "STAGING_LOCK_FILE",
    "STAGING_OWNER_FILE",
    "STAGING_STALE_AFTER_S",
    "VERDICTS",
    "WEIGHTS_FILE",
    "OpenedWeights",
    "StagedAdapter",
    "VerifiedBytes",
    "__version__",
    "_panic",
    "crash_point",
    "hash_file",
    "open_weights",
    "read_safetensors_header",
    "read_verified",
    "seal_problems",
    "stage",
    "sweep_staging",
    "sweep_staging_report",
    "verify_adapters",
    "verify_files",
]

__version__: str
WEIGHTS_FILE: str
PEFT_WEIGHTS_FILE: str
CONFIG_FILE: str
RECORD_FILE: str
STAGING_DIR: str
#: The mode of every published file (0o444).
SEALED_MODE: int
#: The mode of every published adapter directory (0o755), whatever the writer's umask.
DIR_MODE: int
#: The mode of ``{root}/.staging`` (0o1777: every user may stage, nobody may remove another's).
STAGING_DIR_MODE: int
#: The lock file and the owner record inside each staging directory.
STAGING_LOCK_FILE: str
STAGING_OWNER_FILE: str
#: Seconds a staging directory no other rule can judge stays untouched before it is swept.
STAGING_STALE_AFTER_S: int
#: Every verdict of verification, in declaration order ("ok" first).
VERDICTS: tuple[str, ...]
#: The environment variable naming the crash point at which a store SIGKILLs itself.
CRASH_AT_ENV: str
#: "INT" or "TERM": the crash point sends that signal instead of SIGKILL, and goes on.
CRASH_SIGNAL_ENV: str
#: Every crash point, in the order a store reaches them.
CRASH_STEPS: tuple[str, ...]

_Path = str | PathLike[str]
_Tensor = tuple[str, str, list[int]]
_Outcome = tuple[str, str | None, int | None, str | None]

@final
class StagedAdapter:
    @property
    def file_hash(self) -> str: ...
    @property
    def file_size(self) -> int: ...
    @property
    def config_hash(self) -> str: ...
    @property
    def tensors(self) -> list[_Tensor]: ...
    @property
    def path(self) -> Path: ...
    def publish(self, name: str, record: bytes, *, exclusive_claim: bool = False) -> Path: ...
    def discard(self) -> None: ...

def hash_file(path: _Path) -> tuple[str, int]: ...
def read_safetensors_header(
    source: _Path | bytes,
) -> tuple[list[_Tensor], list[tuple[str, str]]]: ...

@final
class VerifiedBytes:
    def __len__(self) -> int: ...

def read_verified(
    path: _Path, expected_size: int
) -> tuple[VerifiedBytes, str, list[tuple[str, str, list[int], int, int]]]: ...

@final
class OpenedWeights:
    @property
    def tensors(self) -> list[_Tensor]: ...
    @property
    def size(self) -> int: ...
    def stage(self, root: _Path, label: str, config: bytes) -> StagedAdapter: ...
    def close(self) -> None: ...

def open_weights(weights: _Path | bytes) -> OpenedWeights: ...
def stage(root: _Path, label: str, weights: _Path | bytes, config: bytes) -> StagedAdapter: ...
def sweep_staging(root: _Path) -> list[str]: ...
def sweep_staging_report(root: _Path) -> tuple[list[str], list[tuple[str, str]]]: ...
def verify_files(
    items: list[tuple[str, str]],
    threads: int | None = None,
    progress: Callable[[int, int, int], object] | None = None,
) -> list[_Outcome]: ...
def verify_adapters(
    root: _Path,
    items: Sequence[tuple[str, str, int, str, _Path]],
    threads: int | None = None,
    progress: Callable[[int, int, int], object] | None = None,
) -> list[tuple[str, list[str]]]: ...
def seal_problems(directory: _Path) -> list[tuple[str, str]]: ...
def crash_point(step: str) -> None: ...
def _panic(message: str) -> None: ...
