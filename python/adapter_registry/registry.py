"""AdapterRegistry: the public API, a facade. Each method says what it promises and hands the
work to the module that owns it: ``storing`` (the write path), ``records`` (the table),
``integrity`` (verify and recover), ``torch`` (verified loading, an extra). Three groups of
methods live with their job and are mixed in: ``finding`` (search, children), ``promoting``
(aliases, tags, archive) and ``evaluating`` (the evaluation history, update_fitness).
"""

import os
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import URL

from . import integrity, queries, storing
from .evaluating import Evaluating
from .finding import Finding
from .identity import open_registry
from .inputs import ConfigInput, WeightsInput
from .integrity import ProgressCallback
from .moving import Moving
from .promoting import Promoting
from .record import AdapterRecord
from .records import Records
from .reports import RecoveryReport, VerifyReport
from .saved_reports import SavedReports
from .serving import Serving

__all__ = ["AdapterRegistry"]


class AdapterRegistry(Finding, Promoting, Evaluating, Moving, SavedReports, Serving):
    """A write-once store of LoRA adapters: files under ``root``, metadata in a database.

    Args:
        root: The adapter root; default ``{home}/adapters``.
        db_url: A SQLite URL (one host) or ``postgresql+psycopg://...`` (many hosts sharing one
            root: see the README); default ``$RUNE_DB_URL`` (when ``home`` is not given), else
            SQLite at ``{home}/adapter_registry.db``. Its schema is brought to this release's.
        home: Where the root and the database are when not given, as the CLI's ``--home``;
            default ``$RUNE_HOME``, else ``~/.rune``.
        create: Create the root and the database where absent (the default). With False, a
            registry that is not there is ``RegistryNotFoundError`` and nothing is created.
        adopt: Let a database with no adapters be bound to a root that holds some (a root whose
            database was lost); ``recover(adopt=True)`` then registers them. Refused otherwise.
        pool_size: Connections kept open to the database.
        pool_timeout: Seconds to wait for a pooled connection.
        connect_timeout: Seconds to reach a database server.

    Raises:
        RegistryNotFoundError: ``create=False`` and no registry is there.
        RegistryMismatchError: The root and the database belong to different registries.
        AdapterStorageError: The root cannot be created, or the database cannot be used.

    A registry is a context manager; leaving it (or ``close()``) closes its connections.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        db_url: str | URL | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        create: bool = True,
        adopt: bool = False,
        pool_size: int = 5,
        pool_timeout: float = 30.0,
        connect_timeout: float = 10.0,
    ) -> None:
        #: The id that binds the root and the database (README: "One registry, wherever it lives").
        self.registry_id: str
        self.root, self._db, self.registry_id = open_registry(
            root, db_url, home, create=create, adopt=adopt, pool_size=pool_size,
            pool_timeout=pool_timeout, connect_timeout=connect_timeout,
        )  # fmt: skip
        self.db_url = self._db.engine.url.render_as_string(hide_password=False)
        self._records = Records(self._db, self.root)

    def close(self) -> None:
        """Close the registry's database connections; it cannot be used after."""
        self._db.dispose()

    def __enter__(self) -> "AdapterRegistry":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AdapterRegistry(root={str(self.root)!r}, db_url={self._db.engine.url!r})"

    def store(
        self,
        weights: WeightsInput,
        *,
        config: ConfigInput = None,
        task_type: str,
        source: str,
        session_id: str,
        base_model_id: str | None = None,
        adapter_id: str | None = None,
        parent_ids: Iterable[str] = (),
        version: int | None = None,
        generation: int | None = None,
        training_task_hash: str | None = None,
        agent_id: str | None = None,
        pass_rate: float | None = None,
        fitness_score: float | None = None,
    ) -> AdapterRecord:
        """Store a new adapter, once: the only write path for weights.

        Args:
            weights: A PEFT adapter directory (``adapter_model.safetensors`` and
                ``adapter_config.json``), a ``.safetensors`` file, or its bytes.
            config: The PEFT LoRA config as a dict or a path to ``adapter_config.json``;
                needed unless ``weights`` is a directory. Checked against the tensors.
            task_type: Kebab-case task category, e.g. ``"bug-fix"``.
            source: ``"distillation"``, ``"evolution"`` or ``"manual"``.
            session_id: The session that produced the adapter.
            base_model_id: Default: the config's ``base_model_name_or_path``.
            adapter_id: A canonical UUID v4; default: a new one.
            parent_ids: Registered adapters this one derives from.
            version: Default: 1 + the parents' highest (else 1); must exceed theirs.
            generation: Default: 1 + the parents' highest (else 0).
            training_task_hash: The deduplication key.
            agent_id: The swarm agent that produced the adapter.
            pass_rate: Evaluated pass rate in [0, 1].
            fitness_score: Evaluated composite fitness (finite).

        Returns:
            The adapter's record, as registered.

        Raises:
            AdapterAlreadyExistsError: The id is registered or its directory exists.
            InvalidAdapterError: Bad weights, config or field. Nothing was written.
            AdapterStorageError: The disk or database failed. Nothing was published, or, if
                the message says the adapter was published, ``recover()`` registers it.
        """
        return storing.store(
            self._records, self.root, weights, config,
            task_type=task_type, source=source, session_id=session_id,
            base_model_id=base_model_id, adapter_id=adapter_id, parent_ids=parent_ids,
            version=version, generation=generation, training_task_hash=training_task_hash,
            agent_id=agent_id, pass_rate=pass_rate, fitness_score=fitness_score,
        )  # fmt: skip

    def retrieve_by_id(self, adapter_id: str) -> AdapterRecord:
        """The record of one adapter.

        Args: adapter_id: Its id.
        Returns: Its record.
        Raises: AdapterNotFoundError: No such adapter.
        """
        return self._records.require(adapter_id)

    def query_by_task_type(
        self, task_type: str, include_archived: bool = False
    ) -> list[AdapterRecord]:
        """Adapters of one task type.

        Args: task_type: The category; include_archived: archived ones too.
        Returns: Their records, oldest first (empty if none).
        """
        stmt = queries.BY_TASK if include_archived else queries.BY_TASK_LIVE
        return self._records.select(stmt, task_type=task_type)

    def query_best_for_task(
        self, task_type: str, base_model_id: str | None = None
    ) -> AdapterRecord | None:
        """The evaluated, live adapter with the highest fitness_score, or None.

        Args:
            task_type: The task category.
            base_model_id: Only adapters of this base model, if given.

        Returns: Ties go to the adapter stored first (then the smaller id): a stable answer.
        """
        if base_model_id is None:
            return self._records.first(queries.BEST, task_type=task_type)
        return self._records.first(
            queries.BEST_FOR_BASE, task_type=task_type, base_model_id=base_model_id
        )

    def list_all(self, include_archived: bool = True) -> list[AdapterRecord]:
        """Every adapter (``search`` filters and orders).

        Args: include_archived: Archived ones too (the default).
        Returns: Their records, oldest first.
        """
        return self._records.select(queries.LIST_ALL if include_archived else queries.LIST_LIVE)

    def find_by_training_task_hash(self, training_task_hash: str) -> list[AdapterRecord]:
        """Adapters trained on the same task.

        Args: training_task_hash: The deduplication key given to ``store()``.
        Returns: Their records, oldest first (empty if none).
        """
        return self._records.select(queries.BY_TRAINING_TASK, hash=training_task_hash)

    def lineage(self, adapter_id: str) -> list[AdapterRecord]:
        """The ancestors of an adapter through ``parent_ids``.

        Args: adapter_id: Its id.
        Returns: Their records, nearest first, each once.
        Raises: AdapterNotFoundError: No such adapter.
        """
        return self._records.lineage(adapter_id)

    def load_state_dict(self, adapter_id: str, device: Any = "cpu") -> dict[str, Any]:
        """The verified tensors of an adapter on ``device``: see ``adapter_registry.torch``.

        Args, Returns, Raises: as ``adapter_registry.torch.load_state_dict`` documents them.
        """
        from . import torch as loading

        return loading.load_state_dict(self, adapter_id, device)

    def load_peft(
        self,
        base_model: Any,
        adapter_id: str,
        adapter_name: str | None = None,
        device: Any = None,
        is_trainable: bool = False,
        check_base_model: bool = True,
    ) -> Any:
        """A PeftModel with the verified adapter loaded: see ``adapter_registry.torch``.

        Args, Returns, Raises: as ``adapter_registry.torch.load_peft`` documents them.
        """
        from . import torch as loading

        return loading.load_peft(
            self, base_model, adapter_id, adapter_name, device, is_trainable, check_base_model
        )

    def store_peft_model(
        self, peft_model: Any, adapter_name: str = "default", **metadata: Any
    ) -> AdapterRecord:
        """Store one adapter of a PeftModel, saved by PEFT: see ``adapter_registry.torch``.

        Args, Returns, Raises: as ``adapter_registry.torch.store_peft_model`` documents them.
        """
        from . import torch as loading

        return loading.store_peft_model(self, peft_model, adapter_name, **metadata)

    def verify(self, adapter_id: str) -> VerifyReport:
        """Hash an adapter's stored files against its record; check its seal.

        Args: adapter_id: Its id.
        Returns: The report (``.ok``, ``.status``, ``.problems``, ``.raise_for_status()``).
        Raises: AdapterNotFoundError: No such adapter.
        """
        return self.verify_all([adapter_id])[0]

    def verify_all(
        self,
        ids: Sequence[str] | None = None,
        threads: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> list[VerifyReport]:
        """Verify many adapters on a pool of threads.

        Args:
            ids: The adapters; default: all, archived included.
            threads: Hashing threads; default: one per core.
            progress: ``progress(files_done, files_total, bytes_done)``, called from this
                thread as the work goes (each adapter is two files); an exception from it
                (or Ctrl-C) stops the batch.

        Returns: One report per adapter, in the order of ``ids`` (else oldest first).
        Raises: AdapterNotFoundError: An id is not registered.
        """
        return integrity.verify_stored(self._records, self.root, ids, threads, progress)

    def recover(self, adopt: bool = False) -> RecoveryReport:
        """Bring files and rows back in step after crashes; safe beside live stores.

        Removes the staging directories of dead stores and empty claim directories, registers
        each published directory that has no row (after verifying it against the record
        written into it before its publish; found by the root and the id, never by a recorded
        path), and reports rows whose files are gone. It never removes or changes a published
        adapter.

        Args:
            adopt: Also register the adapters that were in the root when a database with none
                was bound to it (reported as unregistered otherwise): adopting is explicit.

        Returns: What it did and found (``.clean`` when nothing is left to look at).
        Raises: AdapterStorageError: The root or the database failed.
        """
        return integrity.recover(self._records, self.root, adopt)
