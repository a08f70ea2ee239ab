"""adapter_registry: a write-once store for LoRA adapters.

Every adapter is a directory ``{root}/{adapter_id}/`` holding ``adapter.safetensors`` and
``adapter_config.json`` (standard PEFT), hashed and validated as it is written, with its metadata
as a row of ``adapter_records``. Importing this package never imports torch.
"""

from ._core import __version__
from .errors import (
    AdapterAlreadyExistsError,
    AdapterNotFoundError,
    AdapterRegistryError,
    AdapterStorageError,
    FilesNotStoredWarning,
    IntegrityError,
    InvalidAdapterError,
    InvalidBundleError,
    LoraIdCollisionError,
    MissingDependencyError,
    RegistryMismatchError,
    RegistryNotFoundError,
)
from .record import AdapterRecord
from .registry import AdapterRegistry
from .reports import ExportReport, ImportReport, RecoveryReport, VerifyReport
from .serving import ServedAdapter
from .tables import AliasMove, Evaluation

__all__ = [
    "AdapterAlreadyExistsError",
    "AdapterNotFoundError",
    "AdapterRecord",
    "AdapterRegistry",
    "AdapterRegistryError",
    "AdapterStorageError",
    "AliasMove",
    "Evaluation",
    "ExportReport",
    "FilesNotStoredWarning",
    "ImportReport",
    "IntegrityError",
    "InvalidAdapterError",
    "InvalidBundleError",
    "LoraIdCollisionError",
    "MissingDependencyError",
    "RecoveryReport",
    "RegistryMismatchError",
    "RegistryNotFoundError",
    "ServedAdapter",
    "VerifyReport",
    "__version__",
]
