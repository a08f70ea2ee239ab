"""Type stubs of the Rust core, checked against the build by ``mypy.stubtest``."""

from collections.abc import Callable
from os import PathLike
from typing import final

__all__ = [
    "CONFIG_FILE",
    "PEFT_WEIGHTS_FILE",
    "RECORD_FILE",
    "STAGING_DIR",
    "WEIGHTS_FILE",
    "StagedAdapter",
    "VerifiedBytes",
    "__version__",
    "_panic",
    "hash_file",
    "read_safetensors_header",
    "read_verified",
    "stage",
    "sweep_staging",
    "verify_files",
]

__version__: str
WEIGHTS_FILE: str
PEFT_WEIGHTS_FILE: str
CONFIG_FILE: str
RECORD_FILE: str
STAGING_DIR: str

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
    def path(self) -> str: ...
    def publish(self, name: str, record: bytes, *, exclusive_claim: bool = False) -> str: ...
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
def stage(root: _Path, label: str, weights: _Path | bytes, config: bytes) -> StagedAdapter: ...
def sweep_staging(root: _Path) -> list[str]: ...
def verify_files(
    items: list[tuple[str, str]],
    threads: int | None = None,
    progress: Callable[[int, int, int], object] | None = None,
) -> list[_Outcome]: ...
def _panic(message: str) -> None: ...
