"""Promoting adapters: aliases (mutable names such as ``production``, with their history),
tags, and archiving and unarchiving. The methods are mixed into ``AdapterRegistry``.

An alias never points at an archived adapter: ``set_alias`` refuses an archived one, and
``archive`` refuses an adapter that an alias points at (move or delete the alias first), so
serving by alias never silently reaches a retired adapter. Both take the adapter's row lock
first (SQLite's write lock; ``FOR UPDATE`` on PostgreSQL), so the two can never interleave.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import Connection, delete, insert, select, update

from . import validation
from .errors import AdapterNotFoundError, InvalidAdapterError, about_adapter
from .record import TABLE, AdapterRecord
from .records import Records, now
from .tables import ALIAS_MOVES, ALIASES, TAGS, AliasMove

__all__ = ["Promoting"]


def _locked_row(conn: Connection, adapter_id: str) -> tuple[str, bool]:
    """(id, is_archived) of an adapter, its row locked for this transaction."""
    found = conn.execute(
        select(TABLE.c.id, TABLE.c.is_archived).where(TABLE.c.id == adapter_id).with_for_update()
    ).first()
    if found is None:
        raise AdapterNotFoundError(f"adapter {adapter_id} is not registered")
    return found[0], bool(found[1])


class Promoting:
    """Aliases, tags, archive and unarchive, for ``AdapterRegistry``."""

    _records: Records

    def set_alias(self, alias: str, adapter_id: str, *, by: str | None = None) -> None:
        """Point ``alias`` at an adapter (moving it if set), and record the move.

        Args:
            alias: Lower-case ``[a-z0-9][a-z0-9._-]*``, at most 128 characters, never shaped
                like an id.
            adapter_id: A live (not archived) adapter.
            by: Who moved it (free text).

        Raises:
            InvalidAdapterError: A bad name, or the adapter is archived.
            AdapterNotFoundError: No such adapter.
        """
        validation.check_name("alias", alias)
        setter = validation.check_optional_text("by", by)
        when = now()
        with about_adapter(adapter_id), self._records.db.write() as conn:
            _, archived = _locked_row(conn, adapter_id)
            if archived:
                raise InvalidAdapterError(f"it is archived; alias {alias!r} was not moved")
            values = {"adapter_id": adapter_id, "set_at": when, "set_by": setter}
            moved = conn.execute(update(ALIASES).where(ALIASES.c.alias == alias).values(values))
            if moved.rowcount == 0:
                conn.execute(insert(ALIASES).values(alias=alias, **values))
            conn.execute(
                insert(ALIAS_MOVES).values(
                    alias=alias, adapter_id=adapter_id, moved_at=when, moved_by=setter
                )
            )

    def resolve_alias(self, alias: str) -> AdapterRecord:
        """The adapter an alias points at.

        Args: alias: The name.
        Returns: Its record.
        Raises: AdapterNotFoundError: The alias is not set.
        """
        validation.check_name("alias", alias)
        with self._records.db.read() as conn:
            row = conn.execute(
                select(TABLE)
                .join(ALIASES, ALIASES.c.adapter_id == TABLE.c.id)
                .where(ALIASES.c.alias == alias)
            ).first()
        if row is None:
            raise AdapterNotFoundError(f"alias {alias!r} is not set")
        return self._records.from_row(tuple(row))

    def delete_alias(self, alias: str, *, by: str | None = None) -> None:
        """Unset an alias, and record it in its history.

        Args: alias: The name; by: who unset it.
        Raises: AdapterNotFoundError: The alias is not set.
        """
        validation.check_name("alias", alias)
        setter = validation.check_optional_text("by", by)
        with self._records.db.write() as conn:
            if conn.execute(delete(ALIASES).where(ALIASES.c.alias == alias)).rowcount == 0:
                raise AdapterNotFoundError(f"alias {alias!r} is not set")
            conn.execute(insert(ALIAS_MOVES).values(alias=alias, moved_at=now(), moved_by=setter))

    def aliases(self) -> dict[str, str]:
        """Every alias that is set.

        Returns: The adapter id each points at, by alias name.
        """
        with self._records.db.read() as conn:
            rows = conn.execute(select(ALIASES.c.alias, ALIASES.c.adapter_id).order_by("alias"))
            return {alias: adapter_id for alias, adapter_id in rows}

    def alias_history(self, alias: str) -> list[AliasMove]:
        """Every move of an alias: a rollback is ``set_alias`` to an earlier entry's adapter.

        Args: alias: The name.
        Returns: Its moves (``AliasMove``), oldest first; ``adapter_id`` None where deleted.
        Raises: InvalidAdapterError: Not a valid alias name.
        """
        validation.check_name("alias", alias)
        with self._records.db.read() as conn:
            rows = conn.execute(
                select(ALIAS_MOVES).where(ALIAS_MOVES.c.alias == alias).order_by(ALIAS_MOVES.c.id)
            )
            return [AliasMove(**row._mapping) for row in rows]

    def set_tags(self, adapter_id: str, tags: Mapping[str, str]) -> dict[str, str]:
        """Set key/value labels on an adapter (archived ones too), replacing those keys.

        Args:
            adapter_id: The adapter.
            tags: Keys named as aliases are; values are text checked like every text field.

        Returns: All its tags now.
        Raises:
            InvalidAdapterError: A bad key or value; none is set.
            AdapterNotFoundError: No such adapter.
        """
        with about_adapter(adapter_id):
            if not isinstance(tags, Mapping):
                raise InvalidAdapterError("tags must be a dict of strings to strings")
            checked = {
                validation.check_name("tag key", k): validation.check_text(f"tag {k}", v)
                for k, v in tags.items()
            }
            with self._records.db.write() as conn:
                _locked_row(conn, adapter_id)
                for key, value in checked.items():
                    where = (TAGS.c.adapter_id == adapter_id) & (TAGS.c.key == key)
                    if conn.execute(update(TAGS).where(where).values(value=value)).rowcount:
                        continue
                    conn.execute(insert(TAGS).values(adapter_id=adapter_id, key=key, value=value))
        return self.tags(adapter_id)

    def delete_tags(self, adapter_id: str, keys: Iterable[str]) -> dict[str, str]:
        """Remove tags by key (keys it does not have are ignored).

        Args: adapter_id: The adapter; keys: The tag keys.
        Returns: All its tags now.
        Raises:
            InvalidAdapterError: A bad key; none is removed.
            AdapterNotFoundError: No such adapter.
        """
        with about_adapter(adapter_id):
            if isinstance(keys, str):
                raise InvalidAdapterError("keys must be a list of tag keys, not one string")
            names = [validation.check_name("tag key", k) for k in keys]
            with self._records.db.write() as conn:
                _locked_row(conn, adapter_id)
                conn.execute(
                    delete(TAGS).where(TAGS.c.adapter_id == adapter_id, TAGS.c.key.in_(names))
                )
        return self.tags(adapter_id)

    def tags(self, adapter_id: str) -> dict[str, str]:
        """An adapter's tags.

        Args: adapter_id: The adapter.
        Returns: Its tags, by key.
        Raises: AdapterNotFoundError: No such adapter.
        """
        self._records.require(adapter_id)
        with self._records.db.read() as conn:
            rows = conn.execute(
                select(TAGS.c.key, TAGS.c.value)
                .where(TAGS.c.adapter_id == adapter_id)
                .order_by(TAGS.c.key)
            )
            return {key: value for key, value in rows}

    def archive(self, adapter_id: str) -> AdapterRecord:
        """Soft-delete: the adapter stays on disk and in lineage, out of rankings. Idempotent.

        Args: adapter_id: Its id.
        Returns: The record as it now is.
        Raises:
            AdapterNotFoundError: No such adapter.
            InvalidAdapterError: An alias points at it (move or delete the alias first).
        """
        with about_adapter(adapter_id), self._records.db.write() as conn:
            _locked_row(conn, adapter_id)
            named = (
                conn.execute(select(ALIASES.c.alias).where(ALIASES.c.adapter_id == adapter_id))
                .scalars()
                .all()
            )
            if named:
                raise InvalidAdapterError(
                    f"alias {', '.join(map(repr, sorted(named)))} points at it; move or delete "
                    "the alias before archiving"
                )
            conn.execute(update(TABLE).where(TABLE.c.id == adapter_id).values(is_archived=True))
        return self._records.require(adapter_id)

    def unarchive(self, adapter_id: str) -> AdapterRecord:
        """Bring an archived adapter back into rankings. Idempotent.

        Args: adapter_id: Its id.
        Returns: The record as it now is.
        Raises: AdapterNotFoundError: No such adapter.
        """
        return self._records.update(adapter_id, {"is_archived": False})
