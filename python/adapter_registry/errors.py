"""The exception hierarchy of adapter_registry, shared by the Rust core and the Python layer.

The Rust core raises these same classes (PyO3 ``import_exception!``), so a caller catches one
hierarchy whichever layer found the problem. Every message names the adapter and the problem.

Note that :class:`IntegrityError` is ours, not SQLAlchemy's: import theirs by qualified name.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "AdapterAlreadyExistsError",
    "AdapterNotFoundError",
    "AdapterRegistryError",
    "AdapterStorageError",
    "FilesNotStoredWarning",
    "IntegrityError",
    "InvalidAdapterError",
    "InvalidBundleError",
    "LoraIdCollisionError",
    "MissingDependencyError",
    "RegistryMismatchError",
    "RegistryNotFoundError",
]


class AdapterRegistryError(Exception):
    """Base class of every error the registry raises on purpose."""


class AdapterAlreadyExistsError(AdapterRegistryError):
    """The adapter id is registered, or its directory exists: adapters are written once."""


class AdapterNotFoundError(AdapterRegistryError, LookupError):
    """No adapter with that id is registered."""


class InvalidAdapterError(AdapterRegistryError, ValueError):
    """The input is not a storable adapter (bad weights, config, id, field); nothing was written."""


class InvalidBundleError(AdapterRegistryError, ValueError):
    """A bundle that cannot be imported as a whole (not our format, a member that escapes it,
    a link or a device, an id listed twice); the message names the bundle and the problem.
    Nothing was written."""


class IntegrityError(AdapterRegistryError):
    """Stored bytes no longer match their record (hash, size, or a missing file)."""


class AdapterStorageError(AdapterRegistryError, OSError):
    """The filesystem or database failed the registry (disk full, permissions, server gone).

    ``errno`` is set where the operating system gave one; the message reads the same either
    way, "adapter <id>: ..." first (no "[Errno N]" in front).
    """

    def __str__(self) -> str:
        if self.errno is not None and self.strerror is not None:
            return str(self.strerror)
        return super().__str__()


class RegistryNotFoundError(AdapterRegistryError, LookupError):
    """Opened with ``create=False`` where no registry is: no database (or no registry schema in
    it), or no root. The message begins "no registry at " and names the path or URL; nothing
    was created."""


class RegistryMismatchError(AdapterRegistryError):
    """A root and a database that belong to different registries (or that disagree about the
    adapters they hold) were opened together; the message names both. Nothing was written."""


class FilesNotStoredWarning(UserWarning):
    """store() of a directory kept the weights and the config and left other files out
    (README.md, trainer_state.json, tokenizer files); the message names them."""


class LoraIdCollisionError(AdapterRegistryError):
    """resolve(): another adapter of the registry, with other files, has the same content id
    (``lora_int_id``); the message names both. Improbable (63 bits), and refused rather than
    handed to a server that keys its caches on that id."""


class MissingDependencyError(AdapterRegistryError, ImportError):
    """An optional part (the torch extra) is not installed; the message names the extra."""


@contextmanager
def about_adapter(adapter_id: str, label: str | None = None) -> Iterator[None]:
    """Prefix ``adapter <id>:`` (or ``label``) to registry errors raised inside, where it is
    not there yet."""
    try:
        yield
    except AdapterRegistryError as err:
        prefix = label or f"adapter {adapter_id}"
        if isinstance(err, OSError) and err.errno is not None:
            message = err.strerror or ""
            if prefix in message:
                raise
            raise type(err)(err.errno, f"{prefix}: {message}") from err
        message = str(err)
        if prefix in message:
            raise
        raise type(err)(f"{prefix}: {message}") from err
