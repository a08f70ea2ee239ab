"""The catalog from the shell (issue 13, item 7): ``ls`` with every search filter, ``alias``,
``tag``, ``eval``, ``unarchive``, ``fitness --evaluator``, ``--jsonl`` wherever ``--json`` is a
list, and ``show`` with tags, aliases and the latest evaluations. Bad input is one error line
and writes nothing. On SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from click.testing import CliRunner, Result

from adapter_registry import AdapterRecord, AdapterRegistry
from adapter_registry.cli import cli
from adapter_registry.cli.output import EVALUATION_KEYS, RECORD_KEYS

from conftest import raw_sql

#: Every table the catalog commands write, and the two columns of a record they may change.
TABLES = ("adapter_aliases", "alias_moves", "adapter_tags", "evaluations")
#: Clears the screen and sets the title, if a terminal is given it raw.
HOSTILE = "x\x1b[2J\x1b]0;owned\x07\x9b0m"


def invoke(registry: AdapterRegistry, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["--root", str(registry.root), "--db-url", registry.db_url, *args]
    )


def ok(registry: AdapterRegistry, *args: str) -> Result:
    result = invoke(registry, *args)
    assert result.exit_code == 0, result.output
    return result


def as_json(registry: AdapterRegistry, *args: str) -> Any:
    return json.loads(ok(registry, *args, "--json").stdout)


def as_jsonl(registry: AdapterRegistry, *args: str) -> list[Any]:
    return [json.loads(line) for line in ok(registry, *args, "--jsonl").stdout.splitlines()]


def ids(registry: AdapterRegistry, *args: str) -> list[str]:
    return [r["id"] for r in as_json(registry, "ls", *args)]


def state(registry: AdapterRegistry) -> dict[str, Any]:
    """Everything the catalog commands could write."""
    found: dict[str, Any] = {
        t: sorted(map(repr, raw_sql(registry, f"SELECT * FROM {t}"))) for t in TABLES
    }
    found["records"] = sorted(
        map(repr, raw_sql(registry, "SELECT id, fitness_score, pass_rate, is_archived "
                                    "FROM adapter_records"))
    )  # fmt: skip
    return found


def refused(registry: AdapterRegistry, status: int, *args: str, says: str) -> None:
    """The command fails with one error line saying ``says``, and writes nothing."""
    before = state(registry)
    result = invoke(registry, *args)
    assert result.exit_code == status, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert says in lines[0], result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    assert state(registry) == before


@pytest.fixture
def catalog(store_one: Any, registry: AdapterRegistry) -> dict[str, AdapterRecord]:
    """a (agent-1, s1, manual, fitness 0.9), b child of a (agent-2, s2, evolution, 0.5),
    c (agent-1, s2, distillation, not evaluated, tagged stage=canary), x (archived, 0.99)."""
    a = store_one(1, agent_id="agent-1", session_id="s1", training_task_hash="h-1")
    b = store_one(2, agent_id="agent-2", session_id="s2", source="evolution", parent_ids=[a.id])
    c = store_one(3, agent_id="agent-1", session_id="s2", source="distillation")
    x = store_one(4, agent_id="agent-3", task_type="refactor")
    for record, score in ((a, 0.9), (b, 0.5), (x, 0.99)):
        registry.update_fitness(record.id, fitness_score=score, pass_rate=score - 0.1)
    registry.set_tags(c.id, {"stage": "canary", "team": "search"})
    registry.archive(x.id)
    return {k: registry.retrieve_by_id(v.id) for k, v in dict(a=a, b=b, c=c, x=x).items()}


# ------------------------------------------------------------------------------- ls


def test_ls_takes_every_search_filter(
    registry: AdapterRegistry, catalog: dict[str, AdapterRecord]
) -> None:
    a, b, c, x = (catalog[k].id for k in "abcx")
    assert ids(registry) == [c, b, a]  # newest first, archived left out
    assert ids(registry, "-a") == [x, c, b, a]
    assert ids(registry, "--agent-id", "agent-1") == [c, a]
    assert ids(registry, "--session-id", "s2", "--agent-id", "agent-1") == [c]
    assert ids(registry, "--source", "evolution") == [b]
    assert ids(registry, "--task-type", "refactor", "-a") == [x]
    assert ids(registry, "-t", "refactor") == []
    assert ids(registry, "--base-model", catalog["a"].base_model_id) == [c, b, a]
    assert ids(registry, "-b", "other/model") == []
    assert ids(registry, "--training-task-hash", "h-1") == [a]
    assert ids(registry, "--generation", "1") == [b]
    assert ids(registry, "--children-of", a) == [b]
    assert ids(registry, "--children-of", b) == []
    assert ids(registry, "--min-fitness", "0.6") == [a]
    assert ids(registry, "--max-fitness", "0.6") == [b]
    assert ids(registry, "--min-fitness", "0.6", "-a") == [x, a]
    assert ids(registry, "--min-pass-rate", "0.5") == [a]
    assert ids(registry, "--evaluated") == [b, a]
    assert ids(registry, "--not-evaluated") == [c]
    assert ids(registry, "--tag", "stage=canary") == [c]
    assert ids(registry, "--tag", "stage=canary", "--tag", "team=search") == [c]
    assert ids(registry, "--tag", "stage=canary", "--tag", "team=other") == []
    assert ids(registry, "--created-after", catalog["a"].created_at) == [c, b]
    assert ids(registry, "--created-before", catalog["b"].created_at) == [a]
    offset = catalog["a"].created_at.replace("+00:00", "+02:00")  # two hours earlier
    assert ids(registry, "--created-after", offset) == [c, b, a]
    zulu = catalog["b"].created_at.replace("+00:00", "Z")
    assert ids(registry, "--created-after", zulu, "--created-before", "2999-01-01T00:00Z") == [c]


def test_ls_orders_limits_and_offsets(
    registry: AdapterRegistry, catalog: dict[str, AdapterRecord]
) -> None:
    a, b, c, x = (catalog[k].id for k in "abcx")
    assert ids(registry, "--sort", "fitness") == [a, b, c]  # unevaluated last
    assert ids(registry, "--sort", "fitness", "-a", "-n", "2") == [x, a]
    assert ids(registry, "--sort", "created") == [c, b, a]
    assert ids(registry, "--order-by", "-fitness_score") == [a, b, c]
    assert ids(registry, "--order-by", "fitness_score") == [b, a, c]  # NULLs last either way
    assert ids(registry, "--order-by", "created_at") == [a, b, c]
    assert ids(registry, "--order-by", "agent_id") == [a, c, b]  # ties: the oldest first
    assert ids(registry, "--order-by", "created_at", "--limit", "1", "--offset", "1") == [b]
    assert ids(registry, "--offset", "5") == []
    text = ok(registry, "ls", "--order-by", "-fitness_score", "--limit", "2").stdout
    assert [line.split()[0] for line in text.splitlines()[1:]] == [a, b]


def test_ls_jsonl_is_the_json_one_object_a_line(
    registry: AdapterRegistry, catalog: dict[str, AdapterRecord]
) -> None:
    listed = as_json(registry, "ls", "-a")
    assert as_jsonl(registry, "ls", "-a") == listed and len(listed) == 4
    assert all(tuple(r) == RECORD_KEYS for r in listed)
    assert ok(registry, "ls", "--jsonl", "--agent-id", "nobody").stdout == ""
    assert as_json(registry, "ls", "--agent-id", "nobody") == []


def test_ls_bad_input_is_one_error_line(
    registry: AdapterRegistry, catalog: dict[str, AdapterRecord]
) -> None:
    naive = catalog["a"].created_at[:19]
    refused(registry, 2, "ls", "--created-after", naive, says="has no time zone")
    refused(registry, 2, "ls", "--created-before", "yesterday", says="not an ISO 8601 time")
    refused(registry, 2, "ls", "--tag", "stage", says="'stage' is not KEY=VALUE")
    refused(registry, 2, "ls", "--tag", "a=1", "--tag", "a=2", says="'a' is given twice")
    refused(registry, 2, "ls", "--order-by", "-size", says="'-size' names no column")
    refused(registry, 2, "ls", "--sort", "fitness", "--order-by", "id", says="not both")
    refused(registry, 2, "ls", "--json", "--jsonl", says="give --json or --jsonl, not both")
    refused(registry, 2, "ls", "--limit", "0", says="--limit")
    refused(registry, 2, "ls", "--source", "magic", says="--source")
    unknown = str(uuid.uuid4())
    refused(registry, 1, "ls", "--children-of", unknown, says=f"adapter {unknown} is not")
    refused(registry, 1, "ls", "--min-fitness", "nan", says="min_fitness must be finite")


# ------------------------------------------------------------------------------- alias


def test_alias_set_get_ls_history_and_rm(
    registry: AdapterRegistry, catalog: dict[str, AdapterRecord]
) -> None:
    a, b, c = (catalog[k].id for k in "abc")
    assert ok(registry, "alias", "set", "production", a, "--by", "alice").stdout == (
        f"alias production -> {a}\n"
    )
    moved = as_json(registry, "alias", "set", "production", b)
    assert moved == {"alias": "production", "adapter_id": b, "moved_by": None}
    ok(registry, "alias", "set", "staging", c)
    assert as_json(registry, "alias", "get", "production")["id"] == b
    got = ok(registry, "alias", "get", "staging").stdout.splitlines()
    assert got[0].startswith("ID") and got[1].split()[0] == c
    listed = [{"alias": "production", "adapter_id": b}, {"alias": "staging", "adapter_id": c}]
    assert as_json(registry, "alias", "ls") == listed
    assert as_jsonl(registry, "alias", "ls") == listed
    assert [line.split() for line in ok(registry, "alias", "ls").stdout.splitlines()] == [
        ["ALIAS", "ID"], ["production", b], ["staging", c],
    ]  # fmt: skip
    assert as_json(registry, "alias", "rm", "staging", "--by", "bob") == {
        "alias": "staging", "adapter_id": None, "moved_by": "bob",
    }  # fmt: skip
    assert ok(registry, "alias", "rm", "production").stdout == "alias production removed\n"
    ok(registry, "alias", "set", "production", a)  # the rollback
    history = as_json(registry, "alias", "history", "production")
    assert as_jsonl(registry, "alias", "history", "production") == history
    assert all(tuple(m) == ("id", "alias", "adapter_id", "moved_at", "moved_by") for m in history)
    assert [(m["adapter_id"], m["moved_by"]) for m in history] == [
        (a, "alice"), (b, None), (None, None), (a, None),
    ]  # fmt: skip
    rows = [line.split()[2:] for line in ok(registry, "alias", "history", "production").stdout
            .splitlines()[1:]]  # fmt: skip
    assert rows == [[a, "alice"], [b, "-"], ["-", "-"], [a, "-"]]
    never = ok(registry, "alias", "history", "canary")
    assert never.stdout == "" and "never set" in never.stderr
    assert as_json(registry, "alias", "history", "canary") == []
    shown = as_json(registry, "show", a)
    assert shown["aliases"] == ["production"] and as_json(registry, "show", b)["aliases"] == []


def test_alias_bad_input_is_one_error_line_and_writes_nothing(
    registry: AdapterRegistry, catalog: dict[str, AdapterRecord]
) -> None:
    a, x = catalog["a"].id, catalog["x"].id
    ok(registry, "alias", "set", "production", a)
    unknown = str(uuid.uuid4())
    refused(registry, 1, "alias", "set", "Production", a, says="'Production' must be lower-case")
    refused(registry, 1, "alias", "set", "deadbeef42", a, says="looks like an adapter id")
    refused(registry, 1, "alias", "set", "production", unknown, says=f"{unknown} is not")
    refused(registry, 1, "alias", "set", "production", x, says="archived")
    refused(registry, 1, "alias", "set", "staging", a, "--by", "a\x1bb", says="control")
    refused(registry, 1, "alias", "get", "staging", says="alias 'staging' is not set")
    refused(registry, 1, "alias", "rm", "staging", says="alias 'staging' is not set")
    refused(registry, 1, "alias", "history", "Bad Name", says="must be lower-case")
    refused(registry, 1, "archive", a, says="alias 'production' points at it")
    refused(registry, 2, "alias", "set", "production", says="Missing argument 'ID'")
    refused(registry, 2, "alias", "move", says="No such command 'move'")
    refused(registry, 2, "alias", "ls", "--json", "--jsonl", says="not both")
    assert as_json(registry, "alias", "get", "production")["id"] == a


# ------------------------------------------------------------------------------- tag


def test_tag_sets_removes_and_prints(
    registry: AdapterRegistry, catalog: dict[str, AdapterRecord]
) -> None:
    a, x = catalog["a"].id, catalog["x"].id
    none = ok(registry, "tag", a)
    assert none.stdout == "" and "no tags" in none.stderr
    assert as_json(registry, "tag", a) == {}
    assert ok(registry, "tag", a, "stage=canary", "note=a=b").stdout == ("note=a=b\nstage=canary\n")
    assert as_json(registry, "tag", a, "stage=prod", "--rm", "note") == {"stage": "prod"}
    assert as_json(registry, "tag", a, "--rm", "stage", "--rm", "absent") == {}
    assert as_json(registry, "tag", x, "reason=regressed") == {"reason": "regressed"}  # archived
    ok(registry, "tag", a, "team=infra")
    assert ids(registry, "--tag", "team=infra") == [a]
    assert as_json(registry, "show", a)["tags"] == {"team": "infra"}


def test_tag_bad_input_is_one_error_line_and_writes_nothing(
    registry: AdapterRegistry, catalog: dict[str, AdapterRecord]
) -> None:
    a = catalog["a"].id
    ok(registry, "tag", a, "stage=canary")
    unknown = str(uuid.uuid4())
    refused(registry, 2, "tag", a, "ok=1", "stage", says="'stage' is not KEY=VALUE")
    refused(registry, 2, "tag", a, "k=1", "k=2", says="'k' is given twice")
    refused(registry, 2, "tag", a, "k=1", "--rm", "k", says="'k' is both set and removed")
    refused(registry, 1, "tag", a, "ok=1", "Bad=2", says="tag key 'Bad' must be lower-case")
    refused(registry, 1, "tag", a, "ok=1", "--rm", "Bad", says="tag key 'Bad'")
    refused(registry, 1, "tag", a, "ok=", says="non-empty")
    refused(registry, 1, "tag", a, "ok=a\x1bb", says="control")
    refused(registry, 1, "tag", unknown, "ok=1", says=f"adapter {unknown} is not registered")
    refused(registry, 1, "tag", unknown, "--rm", "ok", says=f"adapter {unknown} is not")
    refused(registry, 1, "tag", unknown, says=f"adapter {unknown} is not registered")
    assert as_json(registry, "tag", a) == {"stage": "canary"}


# ------------------------------------------------------------------------------- eval, fitness


def test_eval_add_and_ls_and_fitness_with_its_evaluator(
    registry: AdapterRegistry, catalog: dict[str, AdapterRecord]
) -> None:
    c = catalog["c"]
    added = ok(registry, "eval", "add", c.id, "humaneval", "0.62", "--evaluator", "ci")
    assert added.stdout.startswith(f"recorded humaneval 0.62 for {c.id} (evaluation ")
    row = as_json(registry, "eval", "add", c.id, "loss", "-1.5", "--eval-set-hash", "e-9",
                  "--details", '{"n": 164, "by": {"k": [1, 2]}}')  # fmt: skip
    assert tuple(row) == EVALUATION_KEYS
    assert (row["adapter_id"], row["metric"], row["value"], row["evaluator"]) == (
        c.id, "loss", -1.5, None,
    )  # fmt: skip
    assert row["eval_set_hash"] == "e-9" and row["details"] == {"by": {"k": [1, 2]}, "n": 164}
    assert registry.retrieve_by_id(c.id).fitness_score is None  # the ranking is untouched
    scored = ok(registry, "fitness", c.id, "--score", "0.7", "--evaluator", "harness",
                "--eval-set-hash", "e-9")  # fmt: skip
    assert "fitness 0.700" in scored.stdout
    history = as_json(registry, "eval", "ls", c.id)
    assert as_jsonl(registry, "eval", "ls", c.id) == history
    assert [(e["metric"], e["value"], e["evaluator"]) for e in history] == [
        ("humaneval", 0.62, "ci"), ("loss", -1.5, None), ("fitness_score", 0.7, "harness"),
    ]  # fmt: skip
    assert history[2]["eval_set_hash"] == "e-9" and history[0]["details"] is None
    assert [e["id"] for e in as_json(registry, "eval", "ls", c.id, "--metric", "loss")] == [
        row["id"]
    ]
    text = ok(registry, "eval", "ls", c.id).stdout.splitlines()
    assert text[0].split() == ["RECORDED", "METRIC", "VALUE", "EVALUATOR", "EVAL", "SET", "DETAILS"]
    assert text[2].split()[2:] == ["loss", "-1.5", "-", "e-9", '{"by":', '{"k":', "[1,", "2]},",
                                   '"n":', "164}"]  # fmt: skip
    assert ok(registry, "eval", "ls", c.id, "--metric", "bleu", "--jsonl").stdout == ""
    empty = ok(registry, "eval", "ls", catalog["b"].id, "--metric", "bleu")
    assert empty.stdout == "" and "no evaluations" in empty.stderr


def test_eval_bad_input_is_one_error_line_and_writes_nothing(
    registry: AdapterRegistry, catalog: dict[str, AdapterRecord]
) -> None:
    a = catalog["a"].id
    unknown = str(uuid.uuid4())
    big = json.dumps({"blob": "x" * (64 * 1024)})
    refused(registry, 1, "eval", "add", a, "m", "1", "--details", big, says="the limit is 65536")
    refused(registry, 2, "eval", "add", a, "m", "1", "--details", "{nope", says="not JSON")
    refused(registry, 2, "eval", "add", a, "m", "1", "--details", "[1]", says="a JSON object")
    refused(registry, 1, "eval", "add", unknown, "m", "1", says=f"adapter {unknown} is not")
    refused(registry, 1, "eval", "add", a, "m", "nan", says="not a finite number")
    refused(registry, 1, "eval", "add", a, "m\x1b", "1", says="control")
    refused(registry, 2, "eval", "add", a, "m", "high", says="'high' is not a valid float")
    refused(registry, 2, "eval", "add", a, "m", says="Missing argument 'VALUE'")
    refused(registry, 1, "eval", "ls", unknown, says=f"adapter {unknown} is not registered")
    refused(registry, 2, "eval", "ls", a, "--json", "--jsonl", says="not both")
    refused(registry, 1, "fitness", a, "--score", "1", "--evaluator", "", says="non-empty")
    refused(registry, 1, "fitness", unknown, "--score", "1", says=f"adapter {unknown} is not")


# ------------------------------------------------------------------------------- unarchive, show


def test_unarchive_brings_an_adapter_back(
    registry: AdapterRegistry, catalog: dict[str, AdapterRecord]
) -> None:
    x = catalog["x"].id
    result = ok(registry, "unarchive", x)
    assert (
        result.stdout.startswith(f"unarchived {x}: refactor")
        and "archived\n" not in (result.stdout.split(":", 1)[1])
    )
    assert as_json(registry, "unarchive", x)["is_archived"] is False  # twice is harmless
    assert ids(registry, "-t", "refactor") == [x]
    assert as_json(registry, "best", "refactor")["id"] == x
    unknown = str(uuid.uuid4())
    refused(registry, 1, "unarchive", unknown, says=f"adapter {unknown} is not registered")


def test_show_has_tags_aliases_and_the_latest_evaluations(
    registry: AdapterRegistry, catalog: dict[str, AdapterRecord]
) -> None:
    c = catalog["c"].id
    for i in range(7):
        registry.record_evaluation(c, "accuracy", i / 10, evaluator=f"e{i}")
    registry.set_alias("canary", c)
    registry.set_alias("challenger", c)
    shown = as_json(registry, "show", c)
    assert list(shown)[:5] == ["record", "directory", "files", "ancestors", "children"]
    assert shown["tags"] == {"stage": "canary", "team": "search"}
    assert shown["aliases"] == ["canary", "challenger"]
    assert shown["evaluation_count"] == 7
    assert [e["value"] for e in shown["latest_evaluations"]] == [0.2, 0.3, 0.4, 0.5, 0.6]
    assert all(tuple(e) == EVALUATION_KEYS for e in shown["latest_evaluations"])
    text = ok(registry, "show", c).stdout
    assert "aliases pointing here: canary, challenger\n" in text
    assert "tags:\n  stage=canary\n  team=search\n" in text
    assert "evaluations (the latest 5 of 7, oldest first)" in text and " e6 " in text
    assert " e1 " not in text
    bare = ok(registry, "show", catalog["b"].id).stdout
    assert "aliases pointing here: (none)" in bare and "tags: (none)" in bare
    assert "evaluations (the latest 2 of 2" in bare  # fitness and pass rate
    assert as_json(registry, "show", catalog["b"].id)["tags"] == {}


def test_catalog_values_written_by_hand_are_shown_escaped(
    registry: AdapterRegistry, catalog: dict[str, AdapterRecord]
) -> None:
    a = catalog["a"].id
    when = catalog["a"].created_at
    raw_sql(registry, "INSERT INTO adapter_tags (adapter_id, key, value) VALUES (:a, :k, :v)",
            a=a, k=HOSTILE, v=HOSTILE)  # fmt: skip
    raw_sql(registry, "INSERT INTO adapter_aliases (alias, adapter_id, set_at, set_by) "
            "VALUES (:n, :a, :t, :n)", n=HOSTILE, a=a, t=when)  # fmt: skip
    raw_sql(registry, "INSERT INTO alias_moves (alias, adapter_id, moved_at, moved_by) "
            "VALUES ('prod', :a, :t, :n)", n=HOSTILE, a=a, t=when)  # fmt: skip
    raw_sql(registry, "INSERT INTO evaluations (adapter_id, metric, value, evaluator, "
            "eval_set_hash, recorded_at) VALUES (:a, :n, 1.0, :n, :n, :t)",
            a=a, n=HOSTILE, t=when)  # fmt: skip
    outputs = {
        "show": ok(registry, "show", a).output,
        "tag": ok(registry, "tag", a).output,
        "alias ls": ok(registry, "alias", "ls").output,
        "alias history": ok(registry, "alias", "history", "prod").output,
        "eval ls": ok(registry, "eval", "ls", a).output,
    }
    for command, output in outputs.items():
        assert "\x1b" not in output and "\x9b" not in output and "\x07" not in output, command
        assert "x\\x1b[2J\\x1b]0;owned\\x07" in output, command
    assert as_json(registry, "tag", a)[HOSTILE] == HOSTILE  # JSON carries the value itself


def test_the_groups_show_their_help() -> None:
    for group, commands in (("alias", ["set", "get", "rm", "ls", "history"]),
                            ("eval", ["add", "ls"])):  # fmt: skip
        result = CliRunner().invoke(cli, [group])
        assert "Traceback" not in result.output and "error:" not in result.output
        assert f"Usage: adapter-registry {group} [OPTIONS] COMMAND" in result.output
        for name in commands:
            assert f"\n  {name} " in result.output, name
            usage = CliRunner().invoke(cli, [group, name, "--help"])
            assert usage.exit_code == 0 and "Example:" in usage.output, name
            assert f"adapter-registry {group} {name}" in usage.output, name
