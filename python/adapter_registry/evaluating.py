"""Evaluating adapters: the append-only history of every measurement, and ``update_fitness``,
which sets the two numbers that ranking uses and appends them to that history in the same
transaction. The methods are mixed into ``AdapterRegistry``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, update

from . import validation
from .errors import AdapterNotFoundError, about_adapter
from .record import TABLE, AdapterRecord
from .records import Records, now
from .tables import EVALUATIONS, Evaluation

__all__ = ["Evaluating"]

#: The longest metric name.
MAX_METRIC = 128


def _append(conn: Connection, adapter_id: str, rows: list[dict[str, Any]]) -> list[Evaluation]:
    when = now()
    made = []
    for row in rows:
        values = {"adapter_id": adapter_id, "recorded_at": when, **row}
        key = conn.execute(insert(EVALUATIONS).values(values).returning(EVALUATIONS.c.id)).scalar()
        made.append(Evaluation(id=key, **values))
    return made


class Evaluating:
    """``record_evaluation``, ``evaluations`` and ``update_fitness``, for ``AdapterRegistry``."""

    _records: Records

    def record_evaluation(
        self,
        adapter_id: str,
        metric: str,
        value: float,
        *,
        evaluator: str | None = None,
        eval_set_hash: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> Evaluation:
        """Append one measurement to an adapter's history (it never changes the fitness or
        pass rate that ranking uses: ``update_fitness`` does).

        Args:
            adapter_id: The adapter measured (archived ones too).
            metric: What was measured (a line of text, at most 128 characters).
            value: The measurement (finite).
            evaluator: Who or what measured it.
            eval_set_hash: Which evaluation set.
            details: A JSON object of at most 64 KB.

        Returns: The history row written.
        Raises:
            InvalidAdapterError: A bad metric, value, text or details; nothing is written.
            AdapterNotFoundError: No such adapter.
        """
        with about_adapter(adapter_id):
            row = {
                "metric": validation.check_text("metric", metric, MAX_METRIC),
                "value": validation.check_finite("value", value),
                "evaluator": validation.check_optional_text("evaluator", evaluator),
                "eval_set_hash": validation.check_optional_text("eval_set_hash", eval_set_hash),
                "details": validation.check_details(details),
            }
            with self._records.db.write() as conn:
                _exists(conn, adapter_id)
                return _append(conn, adapter_id, [row])[0]

    def evaluations(self, adapter_id: str, metric: str | None = None) -> list[Evaluation]:
        """An adapter's history of measurements, oldest first.

        Args: adapter_id: The adapter; metric: Only this metric, if given.
        Returns: The rows (``details_dict()`` decodes their details).
        Raises: AdapterNotFoundError: No such adapter.
        """
        self._records.require(adapter_id)
        stmt = select(EVALUATIONS).where(EVALUATIONS.c.adapter_id == adapter_id)
        if metric is not None:
            stmt = stmt.where(EVALUATIONS.c.metric == metric)
        with self._records.db.read() as conn:
            rows = conn.execute(stmt.order_by(EVALUATIONS.c.id))
            return [Evaluation(**row._mapping) for row in rows]

    def update_fitness(
        self,
        adapter_id: str,
        fitness_score: float | None = None,
        pass_rate: float | None = None,
        *,
        evaluator: str | None = None,
        eval_set_hash: str | None = None,
    ) -> AdapterRecord:
        """Set the fitness and pass rate that ranking uses (the only metadata besides archiving
        that ever changes), and append each to the evaluation history, in one transaction.

        Args:
            adapter_id: The adapter evaluated.
            fitness_score: Its new fitness (finite), if given.
            pass_rate: Its new pass rate in [0, 1], if given (at least one of the two).
            evaluator: Who evaluated it, for the history.
            eval_set_hash: On which evaluation set, for the history.

        Returns: The record as it now is.
        Raises:
            InvalidAdapterError: Neither value, or one out of range; nothing is written.
            AdapterNotFoundError: No such adapter.
        """
        with about_adapter(adapter_id):
            values = validation.check_evaluation(fitness_score, pass_rate)
            who = {
                "evaluator": validation.check_optional_text("evaluator", evaluator),
                "eval_set_hash": validation.check_optional_text("eval_set_hash", eval_set_hash),
            }
        with self._records.db.write() as conn:
            row = conn.execute(
                update(TABLE).where(TABLE.c.id == adapter_id).values(values).returning(TABLE)
            ).first()
            if row is None:
                raise AdapterNotFoundError(f"adapter {adapter_id} is not registered")
            _append(conn, adapter_id, [{"metric": m, "value": v, **who} for m, v in values.items()])
        return self._records.from_row(tuple(row))


def _exists(conn: Connection, adapter_id: str) -> None:
    if conn.execute(select(TABLE.c.id).where(TABLE.c.id == adapter_id)).first() is None:
        raise AdapterNotFoundError(f"adapter {adapter_id} is not registered")
