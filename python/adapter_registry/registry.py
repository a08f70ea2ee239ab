"""AdapterRegistry: the public API. Policy lives here; the byte work is the Rust core's.

A store runs in four steps, and a crash between any two leaves either nothing visible, a
registered adapter, or a published directory that ``recover()`` registers:

1. check the metadata and read the parents (no lock held);
2. stage: the core copies the weights into ``{root}/.staging/`` while hashing and validating
   them, writes the config, seals and fsyncs both;
3. publish: the record is written beside them and the directory renamed to ``{root}/{id}``,
   exclusively (the filesystem decides a same-id race: exactly one rename wins);
4. insert the row in a short ``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import URL, insert, update
from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect as sa_inspect

from . import _core, queries, validation
from .database import TABLE, Database
from .errors import (
    AdapterAlreadyExistsError,
    AdapterNotFoundError,
    AdapterRegistryError,
    AdapterStorageError,
    InvalidAdapterError,
    about_adapter,
)
from .inputs import ConfigInput, WeightsInput, resolve
from .lora_config import check_tensors, parse_config
from .record import AdapterRecord
from .reports import RecoveryReport, VerifyReport

__all__ = ["AdapterRegistry", "default_home"]

#: The database URL used when none is given (else SQLite under RUNE_HOME).
DB_URL_ENV = "RUNE_DB_URL"

#: Set to "1" to publish with the exclusive-claim scheme instead of renameat2 (for testing the
#: path that filesystems without RENAME_NOREPLACE take).
FORCE_CLAIM_ENV = "ADAPTER_REGISTRY_FORCE_CLAIM"

#: Fault injection for crash tests: the step at which store() kills its own process with
#: SIGKILL, exactly as a crash there would leave things. In store order: "copying",
#: "weights-synced" (in the core), "staged", "claimed", "before-rename", "renamed" (in the
#: core), "published", "inserted" (the row is written, its transaction not yet committed).
CRASH_AT_ENV = "ADAPTER_REGISTRY_CRASH_AT"
#: The mode of every published file: read-only for everyone.
SEALED_MODE = 0o444
CRASH_STEPS = (
    "copying", "weights-synced", "staged", "claimed", "before-rename", "renamed", "published",
    "inserted",
)  # fmt: skip

ProgressCallback = Callable[[int, int, int], object]


def _crash_point(step: str) -> None:
    if os.environ.get(CRASH_AT_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def default_home() -> Path:
    """``$RUNE_HOME``, else ``~/.rune``."""
    return Path(os.environ.get("RUNE_HOME") or "~/.rune").expanduser()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


_ALL_FIELDS = frozenset(queries.COLUMNS)
# An instance as the ORM makes one for a loaded row: SQLModel's and SQLAlchemy's state, no values.
_new_instance = sa_inspect(AdapterRecord).class_manager.new_instance


def _record(values: Sequence[Any]) -> AdapterRecord:
    """A record from a row in table order, on the hot read path.

    The database already typed every value, so nothing is validated again: the instance is made
    as the ORM makes one for a loaded row and its fields are set in one step (model_construct
    would route each through SQLAlchemy's attribute events, at twice the cost of the query).
    """
    fields = dict(zip(queries.COLUMNS, values, strict=True))
    if fields["is_archived"] is not None:
        fields["is_archived"] = bool(fields["is_archived"])
    record: AdapterRecord = _new_instance()
    record.__dict__.update(fields)
    object.__setattr__(record, "__pydantic_fields_set__", set(_ALL_FIELDS))
    return record


class AdapterRegistry:
    """A write-once store of LoRA adapters: files under ``root``, metadata in a database.

    ``root`` defaults to ``$RUNE_HOME/adapters`` and ``db_url`` to ``$RUNE_DB_URL``, else SQLite
    at ``$RUNE_HOME/adapter_registry.db`` (``RUNE_HOME`` defaults to ``~/.rune``). ``db_url`` is
    a SQLite URL (one host) or ``postgresql+psycopg://...`` (many hosts sharing one root: see
    the README). Both are created on first use; the schema is brought to this release's.

    ``pool_size``, ``pool_timeout`` (seconds to wait for a pooled connection) and
    ``connect_timeout`` (seconds to reach a database server) tune the connection pool.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        db_url: str | None = None,
        *,
        pool_size: int = 5,
        pool_timeout: float = 30.0,
        connect_timeout: float = 10.0,
    ):
        home = default_home()
        self.root = Path(root if root is not None else home / "adapters").expanduser().resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise AdapterStorageError(
                err.errno, f"adapter root {self.root} cannot be created: {err.strerror}"
            ) from err
        if db_url is None:
            db_url = os.environ.get(DB_URL_ENV) or None
        url = (
            db_url
            if db_url is not None
            else URL.create("sqlite", database=str(home / "adapter_registry.db"))
        )
        self.db_url = str(url)
        self._db = Database(
            url, pool_size=pool_size, pool_timeout=pool_timeout, connect_timeout=connect_timeout
        )

    def close(self) -> None:
        self._db.dispose()

    def __enter__(self) -> AdapterRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AdapterRegistry(root={str(self.root)!r}, db_url={self._db.engine.url!r})"

    # ------------------------------------------------------------------ writing

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
        """Store a new adapter, once. The only write path for weights.

        ``weights`` is a PEFT adapter directory, a ``.safetensors`` path, or its bytes (then
        ``config`` is a dict or a path to ``adapter_config.json``). Raises
        AdapterAlreadyExistsError if the id is registered or its directory exists, and
        InvalidAdapterError for bad input; either way nothing is written.
        """
        if adapter_id is None:
            adapter_id = str(uuid.uuid4())
        with about_adapter(str(adapter_id)):
            validation.check_adapter_id(adapter_id)
            fields: dict[str, Any] = {
                "task_type": validation.check_task_type(task_type),
                "source": validation.check_source(source),
                "session_id": validation.check_text("session_id", session_id),
                "training_task_hash": validation.check_optional_text(
                    "training_task_hash", training_task_hash
                ),
                "agent_id": validation.check_optional_text("agent_id", agent_id),
                "pass_rate": validation.check_pass_rate(pass_rate),
                "fitness_score": validation.check_fitness(fitness_score),
            }
            parents = validation.check_parent_ids(parent_ids, adapter_id)
            weights_source, config_bytes = resolve(weights, config)
            lora = parse_config(config_bytes)
            base = base_model_id if base_model_id is not None else lora.base_model_name_or_path
            if base is None:
                raise InvalidAdapterError(
                    "no base_model_id: pass it, or set base_model_name_or_path in the config"
                )
            fields["base_model_id"] = validation.check_text("base_model_id", base)
            self._refuse_existing(adapter_id)
            fields["version"], fields["generation"] = self._lineage_numbers(
                parents, version, generation
            )
            return self._stage_publish_insert(
                adapter_id, weights_source, config_bytes, lora, parents, fields
            )

    def _refuse_existing(self, adapter_id: str) -> None:
        if self._db.fetch(queries.EXISTS, id=adapter_id) or os.path.lexists(self.root / adapter_id):
            raise AdapterAlreadyExistsError(
                f"adapter {adapter_id} already exists; adapters are written once"
            )

    def _lineage_numbers(
        self, parents: list[str], version: int | None, generation: int | None
    ) -> tuple[int, int]:
        """Defaults: version 1 + the highest parent's (else 1), generation likewise (else 0)."""
        top_version, top_generation = 0, -1
        if parents:
            rows = [_record(values) for values in self._db.fetch(queries.BY_IDS, ids=parents)]
            absent = sorted(set(parents) - {r.id for r in rows})
            if absent:
                raise InvalidAdapterError(f"parent {', '.join(absent)} is not registered")
            top_version = max(r.version for r in rows)
            top_generation = max(r.generation or 0 for r in rows)
        if version is None:
            version = validation.check_count("version", top_version + 1, 1)
        elif validation.check_count("version", version, 1) <= top_version:
            raise InvalidAdapterError(
                f"version {version} must exceed its parents' highest version {top_version}"
            )
        if generation is None:
            generation = top_generation + 1
        validation.check_count("generation", generation, 0)
        return version, generation

    def _stage_publish_insert(
        self,
        adapter_id: str,
        weights_source: str | bytes,
        config_bytes: bytes,
        lora: Any,
        parents: list[str],
        fields: dict[str, Any],
    ) -> AdapterRecord:
        staged = _core.stage(str(self.root), adapter_id, weights_source, config_bytes)
        _crash_point("staged")
        try:
            check_tensors(lora, staged.tensors)
            record = AdapterRecord(
                id=adapter_id,
                rank=lora.r,
                created_at=_now(),
                file_path=str(self.root / adapter_id / _core.WEIGHTS_FILE),
                file_hash=staged.file_hash,
                file_size_bytes=staged.file_size,
                is_archived=False,
                parent_ids=json.dumps(parents),
                config_hash=staged.config_hash,
                **fields,
            )
            record_json = json.dumps(record.to_dict(), sort_keys=True).encode()
            staged.publish(
                adapter_id, record_json, exclusive_claim=os.environ.get(FORCE_CLAIM_ENV) == "1"
            )
        finally:
            staged.discard()  # a no-op once published
        _crash_point("published")
        return self._insert(record)[0]

    def _insert(self, record: AdapterRecord) -> tuple[AdapterRecord, bool]:
        """Insert the row of a published adapter; says whether this call inserted it."""
        try:
            with self._db.write() as conn:
                conn.execute(insert(TABLE).values(record.to_dict()))
                _crash_point("inserted")
        except sa_exc.IntegrityError:
            existing = self._fetch(record.id)
            if existing is not None and (existing.file_hash, existing.created_at) == (
                record.file_hash,
                record.created_at,
            ):
                return existing, False  # the same publish, registered by someone else first
            raise AdapterAlreadyExistsError(
                f"adapter {record.id} already exists; adapters are written once"
            ) from None
        except AdapterStorageError as err:
            raise AdapterStorageError(
                err.errno or 0,
                f"adapter {record.id} was published at {self.root / record.id} but its row "
                f"was not written ({err}); recover() registers it",
            ) from err
        return record, True

    def archive(self, adapter_id: str) -> AdapterRecord:
        """Soft-delete: the adapter stays on disk and in lineage, out of rankings. Idempotent."""
        return self._update(adapter_id, {"is_archived": True})

    def update_fitness(
        self, adapter_id: str, fitness_score: float | None = None, pass_rate: float | None = None
    ) -> AdapterRecord:
        """Record an evaluation; the only metadata besides archiving that ever changes."""
        with about_adapter(adapter_id):
            values: dict[str, Any] = {}
            if fitness_score is not None:
                values["fitness_score"] = validation.check_fitness(fitness_score)
            if pass_rate is not None:
                values["pass_rate"] = validation.check_pass_rate(pass_rate)
            if not values:
                raise InvalidAdapterError("update_fitness needs fitness_score or pass_rate")
        return self._update(adapter_id, values)

    def _update(self, adapter_id: str, values: dict[str, Any]) -> AdapterRecord:
        with self._db.write() as conn:
            row = conn.execute(
                update(TABLE).where(TABLE.c.id == adapter_id).values(values).returning(TABLE)
            ).first()
        if row is None:
            raise AdapterNotFoundError(f"adapter {adapter_id} is not registered")
        return _record(tuple(row))

    # ------------------------------------------------------------------ reading

    def _fetch(self, adapter_id: str) -> AdapterRecord | None:
        found = self._db.fetch(queries.BY_ID, id=adapter_id)
        return _record(found[0]) if found else None

    def _select(self, stmt: Any, **params: Any) -> list[AdapterRecord]:
        return [_record(values) for values in self._db.fetch(stmt, **params)]

    def retrieve_by_id(self, adapter_id: str) -> AdapterRecord:
        record = self._fetch(adapter_id)
        if record is None:
            raise AdapterNotFoundError(f"adapter {adapter_id} is not registered")
        return record

    def query_by_task_type(
        self, task_type: str, include_archived: bool = False
    ) -> list[AdapterRecord]:
        """Adapters of one task type, oldest first."""
        stmt = queries.BY_TASK if include_archived else queries.BY_TASK_LIVE
        return self._select(stmt, task_type=task_type)

    def query_best_for_task(
        self, task_type: str, base_model_id: str | None = None
    ) -> AdapterRecord | None:
        """The evaluated, non-archived adapter with the highest fitness_score, or None.

        Ties go to the adapter stored first (then the smaller id), so the answer is stable.
        """
        if base_model_id is None:
            found = self._db.fetch(queries.BEST, task_type=task_type)
        else:
            found = self._db.fetch(
                queries.BEST_FOR_BASE, task_type=task_type, base_model_id=base_model_id
            )
        return _record(found[0]) if found else None

    def list_all(self, include_archived: bool = True) -> list[AdapterRecord]:
        """Every adapter, oldest first."""
        return self._select(queries.LIST_ALL if include_archived else queries.LIST_LIVE)

    def find_by_training_task_hash(self, training_task_hash: str) -> list[AdapterRecord]:
        """Adapters trained on the same task (the deduplication key), oldest first."""
        return self._select(queries.BY_TRAINING_TASK, hash=training_task_hash)

    def lineage(self, adapter_id: str) -> list[AdapterRecord]:
        """The ancestors of an adapter through parent_ids, nearest first, each once."""
        frontier = self.retrieve_by_id(adapter_id).parents
        seen: set[str] = {adapter_id}
        ancestors: list[AdapterRecord] = []
        while frontier:
            frontier = [p for p in dict.fromkeys(frontier) if p not in seen]
            if not frontier:
                break
            seen.update(frontier)
            by_id = {r.id: r for r in self._select(queries.BY_IDS, ids=frontier)}
            generation = [by_id[p] for p in frontier if p in by_id]
            ancestors.extend(generation)
            frontier = [p for r in generation for p in r.parents]
        return ancestors

    # ------------------------------------------------------------------ loading (torch extra)

    def load_state_dict(self, adapter_id: str, device: Any = "cpu") -> dict[str, Any]:
        """The verified tensors of an adapter on ``device`` (see ``adapter_registry.torch``)."""
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
        """A PeftModel with the verified adapter loaded (see ``adapter_registry.torch``)."""
        from . import torch as loading

        return loading.load_peft(
            self, base_model, adapter_id, adapter_name, device, is_trainable, check_base_model
        )

    def store_peft_model(
        self, peft_model: Any, adapter_name: str = "default", **metadata: Any
    ) -> AdapterRecord:
        """Store one adapter of a PeftModel, saved by PEFT (see ``adapter_registry.torch``)."""
        from . import torch as loading

        return loading.store_peft_model(self, peft_model, adapter_name, **metadata)

    # ------------------------------------------------------------------ integrity

    def verify(self, adapter_id: str) -> VerifyReport:
        """Hash the adapter's stored weights and config against its record."""
        return self.verify_all([adapter_id])[0]

    def verify_all(
        self,
        ids: Sequence[str] | None = None,
        threads: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> list[VerifyReport]:
        """Verify many adapters (default: all, archived included) on a pool of threads.

        ``progress(files_done, files_total, bytes_done)`` is called from this thread as the
        work goes (each adapter is two files: weights and config).
        """
        if ids is None:
            records = self.list_all(include_archived=True)
        else:
            records = [self.retrieve_by_id(i) for i in ids]
        items: list[tuple[str, str]] = []
        for r in records:
            items.append((r.file_path, r.file_hash))
            items.append((str(Path(r.file_path).with_name(_core.CONFIG_FILE)), r.config_hash))
        outcomes = _core.verify_files(items, threads, progress)
        return [_report(r, outcomes[2 * i], outcomes[2 * i + 1]) for i, r in enumerate(records)]

    def recover(self) -> RecoveryReport:
        """Bring files and rows back in step after crashes; safe beside live stores.

        Removes the staging directories of dead stores and empty claim directories, registers
        each published directory that has no row (after verifying it against the record
        written into it before its publish), and reports rows whose files are gone. It never
        removes or changes a published adapter.
        """
        report = RecoveryReport()
        report.removed_staging = sorted(_core.sweep_staging(str(self.root)))
        rows: dict[str, str] = {i: path for i, path in self._db.fetch(queries.PATHS)}
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            if entry.name.startswith(".") or entry.name in rows:
                continue
            why = self._roll_forward(entry, report)
            if why is not None:
                report.unregistered.append((entry.name, why))
        report.missing = sorted(i for i, path in rows.items() if not os.path.isfile(path))
        return report

    def _roll_forward(self, entry: os.DirEntry[str], report: RecoveryReport) -> str | None:
        """Register one unregistered directory; returns why not, where it cannot be."""
        if not entry.is_dir(follow_symlinks=False):
            return "not a directory"
        try:
            validation.check_adapter_id(entry.name)
        except InvalidAdapterError:
            return "not an adapter id"
        path = Path(entry.path)
        try:
            path.rmdir()  # only succeeds on an empty directory: a claim never filled
            report.removed_claims.append(entry.name)
            return None
        except OSError:
            pass
        try:
            raw = json.loads((path / _core.RECORD_FILE).read_bytes())
            record = AdapterRecord.model_validate({c.name: raw[c.name] for c in TABLE.columns})
            _check_recorded_fields(record)
        except (OSError, ValueError, KeyError, TypeError) as err:
            return f"no valid {_core.RECORD_FILE}: {err}"
        if record.id != entry.name or record.file_path != str(path / _core.WEIGHTS_FILE):
            return f"{_core.RECORD_FILE} describes another adapter ({record.id})"
        verdict = _report(
            record,
            *_core.verify_files(
                [
                    (record.file_path, record.file_hash),
                    (str(path / _core.CONFIG_FILE), record.config_hash),
                ],
            ),
        )
        if not verdict.ok:
            return "; ".join(verdict.problems)
        try:
            _, inserted = self._insert(record)
        except AdapterRegistryError as err:
            return str(err)
        if inserted:  # else its own store() finished while we looked
            report.rolled_forward.append(record.id)
        return None


def _check_recorded_fields(record: AdapterRecord) -> None:
    """The same checks store() made, for a record read back from disk."""
    validation.check_adapter_id(record.id)
    validation.check_task_type(record.task_type)
    validation.check_source(record.source)
    validation.check_pass_rate(record.pass_rate)
    validation.check_fitness(record.fitness_score)
    validation.check_parent_ids(json.loads(record.parent_ids or "[]"), record.id)


def _report(
    record: AdapterRecord,
    weights: tuple[str, str | None, int | None, str | None],
    config: tuple[str, str | None, int | None, str | None],
) -> VerifyReport:
    problems: list[str] = []
    verdicts: list[str] = []
    for name, (verdict, digest, size, detail), expected_hash, expected_size in (
        (_core.WEIGHTS_FILE, weights, record.file_hash, record.file_size_bytes),
        (_core.CONFIG_FILE, config, record.config_hash, None),
    ):
        if verdict == "ok" and expected_size is not None and size != expected_size:
            verdict = "mismatch"
        verdicts.append(verdict)
        if verdict == "mismatch":
            problems.append(
                f"{name} does not match its record (sha256 {digest}, {size} bytes; "
                f"recorded {expected_hash}"
                + (f", {expected_size} bytes)" if expected_size is not None else ")")
            )
        elif verdict != "ok":
            problems.append(f"{name} is {verdict}: {detail}")
    if verdicts[0] == "ok":
        for verdict, problem in seal_problems(record.file_path):
            verdicts.append(verdict)
            problems.append(problem)
    return VerifyReport(record.id, VerifyReport.worst(verdicts), tuple(problems))


def seal_problems(weights_path: str) -> list[tuple[str, str]]:
    """What is wrong with the seal of a published directory, as (verdict, problem) pairs.

    Its files stay read-only (0444): a changed mode means someone made them writable. PEFT
    loads adapter_model.safetensors, which must be the verified file itself (a hard link).
    """
    found: list[tuple[str, str]] = []
    weights = Path(weights_path)
    for path in (weights, weights.with_name(_core.CONFIG_FILE)):
        try:
            mode = stat.S_IMODE(os.stat(path, follow_symlinks=False).st_mode)
        except OSError:
            continue  # the hash check has reported it
        if mode != SEALED_MODE:
            found.append(("mismatch", f"{path.name} has mode {mode:04o}; sealed files are 0444"))
    link = weights.with_name(_core.PEFT_WEIGHTS_FILE)
    try:
        linked = os.stat(link, follow_symlinks=False)
        target = os.stat(weights, follow_symlinks=False)
    except FileNotFoundError:
        return [*found, ("missing", f"{_core.PEFT_WEIGHTS_FILE} is missing")]
    except OSError as err:
        return [*found, ("unreadable", f"{_core.PEFT_WEIGHTS_FILE} is unreadable: {err.strerror}")]
    if (linked.st_dev, linked.st_ino) != (target.st_dev, target.st_ino):
        found.append(
            ("mismatch", f"{_core.PEFT_WEIGHTS_FILE} is not the same file as {_core.WEIGHTS_FILE}")
        )
    return found
