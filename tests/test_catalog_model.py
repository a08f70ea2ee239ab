"""Random sequences of alias moves, tag edits, evaluations, fitness updates, archives and
unarchives against a plain Python model of the registry (issue 13): every call succeeds or is
refused exactly when the model says, and aliases, tags, histories and search results match
the model afterwards, on SQLite and on PostgreSQL.

Strategy: ``operations``, lists of up to 12 of the eight operations over 4 adapters, 2 alias
names, 2 tag keys and 2 tag values; ``EXAMPLES`` examples per backend, derandomized.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter_registry import AdapterNotFoundError, AdapterRegistry, InvalidAdapterError

SCALE = int(os.environ.get("ADAPTER_REGISTRY_STRESS_SCALE", "1"))
EXAMPLES = 30 * SCALE
ADAPTERS = 4
ALIASES = ("production", "canary")
KEYS = ("team", "stage")
VALUES = ("a", "b")

index = st.integers(0, ADAPTERS - 1)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("set_alias"), st.sampled_from(ALIASES), index),
        st.tuples(st.just("delete_alias"), st.sampled_from(ALIASES)),
        st.tuples(st.just("set_tags"), index, st.sampled_from(KEYS), st.sampled_from(VALUES)),
        st.tuples(st.just("delete_tags"), index, st.sampled_from(KEYS)),
        st.tuples(st.just("evaluate"), index, st.floats(-1, 1)),
        st.tuples(st.just("fitness"), index, st.sampled_from([0.1, 0.5, 0.9])),
        st.tuples(st.just("archive"), index),
        st.tuples(st.just("unarchive"), index),
    ),
    max_size=12,
)


@dataclass
class Model:
    """The registry as plain Python: what each operation must do."""

    ids: list[str]
    aliases: dict[str, str] = field(default_factory=dict)
    moves: dict[str, int] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    evaluations: dict[str, int] = field(default_factory=dict)
    fitness: dict[str, float | None] = field(default_factory=dict)
    archived: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def read(cls, registry: AdapterRegistry, ids: list[str]) -> Model:
        """The model of the registry as it is now (state carries over between examples)."""
        model = cls(ids)
        model.aliases = registry.aliases()
        model.moves = {a: len(registry.alias_history(a)) for a in ALIASES}
        for i in ids:
            record = registry.retrieve_by_id(i)
            model.tags[i] = registry.tags(i)
            model.evaluations[i] = len(registry.evaluations(i))
            model.fitness[i] = record.fitness_score
            model.archived[i] = bool(record.is_archived)
        return model

    def apply(self, op: tuple[Any, ...]) -> type[Exception] | None:
        """Do ``op`` to the model; returns the error the registry must raise, if any."""
        kind, *args = op
        if kind == "set_alias":
            alias, target = args[0], self.ids[args[1]]
            if self.archived[target]:
                return InvalidAdapterError
            self.aliases[alias] = target
            self.moves[alias] += 1
        elif kind == "delete_alias":
            if args[0] not in self.aliases:
                return AdapterNotFoundError
            del self.aliases[args[0]]
            self.moves[args[0]] += 1
        elif kind == "set_tags":
            self.tags[self.ids[args[0]]][args[1]] = args[2]
        elif kind == "delete_tags":
            self.tags[self.ids[args[0]]].pop(args[1], None)
        elif kind == "evaluate":
            self.evaluations[self.ids[args[0]]] += 1
        elif kind == "fitness":
            self.fitness[self.ids[args[0]]] = args[1]
            self.evaluations[self.ids[args[0]]] += 1
        elif kind == "archive":
            target = self.ids[args[0]]
            if target in self.aliases.values():
                return InvalidAdapterError
            self.archived[target] = True
        elif kind == "unarchive":
            self.archived[self.ids[args[0]]] = False
        return None


def run(registry: AdapterRegistry, ids: list[str], op: tuple[Any, ...]) -> None:
    kind, *args = op
    if kind == "set_alias":
        registry.set_alias(args[0], ids[args[1]], by="model")
    elif kind == "delete_alias":
        registry.delete_alias(args[0])
    elif kind == "set_tags":
        registry.set_tags(ids[args[0]], {args[1]: args[2]})
    elif kind == "delete_tags":
        registry.delete_tags(ids[args[0]], [args[1]])
    elif kind == "evaluate":
        registry.record_evaluation(ids[args[0]], "score", args[1])
    elif kind == "fitness":
        registry.update_fitness(ids[args[0]], args[1])
    elif kind == "archive":
        registry.archive(ids[args[0]])
    elif kind == "unarchive":
        registry.unarchive(ids[args[0]])


@pytest.fixture
def stored(store_one: Any) -> list[str]:
    return [store_one(seed=i).id for i in range(ADAPTERS)]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops=operations)
def test_the_registry_behaves_as_its_model(
    registry: AdapterRegistry, stored: list[str], ops: list[tuple[Any, ...]]
) -> None:
    model = Model.read(registry, stored)
    for op in ops:
        expected = model.apply(op)
        if expected is None:
            run(registry, stored, op)
        else:
            with pytest.raises(expected):
                run(registry, stored, op)
    assert registry.aliases() == model.aliases
    for alias in ALIASES:
        assert len(registry.alias_history(alias)) == model.moves[alias]
    for i in stored:
        assert registry.tags(i) == model.tags[i]
        assert len(registry.evaluations(i)) == model.evaluations[i]
    live = [i for i in stored if not model.archived[i]]
    ranked = sorted(
        live, key=lambda i: (model.fitness[i] is None, -(model.fitness[i] or 0.0), stored.index(i))
    )
    assert [r.id for r in registry.search(order_by="-fitness_score")] == ranked
    assert {r.id for r in registry.search(include_archived=True)} == set(stored)
    for key in KEYS:
        for value in VALUES:
            expect = {i for i in live if model.tags[i].get(key) == value}
            assert {r.id for r in registry.search(tags={key: value})} == expect
