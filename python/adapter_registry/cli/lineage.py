"""``lineage``: an adapter's ancestors and descendants through ``parent_ids``, as a tree.

Lineage is a graph, not a tree (an adapter may have several parents, two parents may share an
ancestor): an adapter reached a second time is shown once more, marked ``repeated``, without
its branch again. Trees are built without recursion, so a long evolution chain is no problem.

The JSON nests at most ``MAX_DEPTH`` generations each way (JSON nested deeper than about 1,000
levels is more than common parsers read back): a node at that depth carries ``"truncated":
true`` and no branch of its own, and ``adapter-registry lineage <its id>`` goes on from it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import click

from ..record import AdapterRecord
from ..registry import AdapterRegistry
from .app import Settings
from .options import ADAPTER
from .output import emit_json, json_option, number, shown

__all__ = ["lineage", "lineage_json", "node_json", "tree_text"]

Node = dict[str, Any]

#: Generations nested each way in the JSON (two JSON levels each: a node and its list).
MAX_DEPTH = 100


def node_json(record: AdapterRecord, repeated: bool = False) -> Node:
    return {
        "id": record.id,
        "task_type": record.task_type,
        "version": record.version,
        "generation": record.generation,
        "fitness_score": record.fitness_score,
        "source": record.source,
        "is_archived": bool(record.is_archived),
        "repeated": repeated,
    }


def _grow(
    root: AdapterRecord, edges: Callable[[AdapterRecord], list[AdapterRecord]], key: str
) -> list[Node]:
    seen = {root.id}
    top: list[Node] = []
    stack: list[tuple[AdapterRecord, list[Node], int]] = [(root, top, 1)]
    while stack:
        record, into, depth = stack.pop()
        for other in edges(record):
            node = node_json(other, repeated=other.id in seen)
            node[key] = []
            into.append(node)
            if node["repeated"]:
                continue
            if depth == MAX_DEPTH and edges(other):
                node["truncated"] = True
                continue
            seen.add(other.id)
            stack.append((other, node[key], depth + 1))
    return top


def lineage_json(registry: AdapterRegistry, record: AdapterRecord) -> Node:
    """The adapter with ``parents`` (each with its ``parents``) and ``children`` (likewise)."""
    ancestors = {r.id: r for r in registry.lineage(record.id)}
    children: defaultdict[str, list[AdapterRecord]] = defaultdict(list)
    for other in registry.list_all(include_archived=True):
        for parent in other.parents:
            children[parent].append(other)
    node = node_json(record)
    node["parents"] = _grow(
        record, lambda r: [ancestors[p] for p in r.parents if p in ancestors], "parents"
    )
    node["children"] = _grow(record, lambda r: children.get(r.id, []), "children")
    return node


def _label(node: Node) -> str:
    text = shown(
        f"{node['id']}  {node['task_type']}  v{node['version']}  gen {node['generation']}  "
        f"fitness {number(node['fitness_score'])}  {node['source']}"
    )
    if node["is_archived"]:
        text += "  archived"
    if node["repeated"]:
        text += "  (repeated: its branch is shown above)"
    if node.get("truncated"):
        text += f"  (deeper than {MAX_DEPTH} generations: show its own lineage)"
    return text


def tree_text(root: Node) -> str:
    """The adapter, its parents' branches (``parent``), then its children's (``child``)."""
    lines = [_label(root)]
    branches = [("parent", n) for n in root["parents"]] + [("child", n) for n in root["children"]]
    # Depth first, without recursion: each node's branches are pushed last first.
    stack: list[tuple[str, Node, str, bool]] = [
        (kind, node, "", i == len(branches) - 1) for i, (kind, node) in enumerate(branches)
    ][::-1]
    while stack:
        kind, node, prefix, last = stack.pop()
        lines.append(f"{prefix}{'└── ' if last else '├── '}{kind} {_label(node)}")
        below = node["parents" if kind == "parent" else "children"]
        inner = prefix + ("    " if last else "│   ")
        stack.extend(
            (kind, n, inner, i == len(below) - 1) for i, n in reversed(list(enumerate(below)))
        )
    return "\n".join(lines)


@click.command()
@click.argument("adapter_id", metavar="ID", type=ADAPTER)
@json_option
@click.pass_obj
def lineage(settings: Settings, adapter_id: str, as_json: bool) -> None:
    """Show an adapter's ancestors and descendants as a tree.

    Its parents' branches come first, then its children's.

    \b
    Example:
      adapter-registry lineage 3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b
    """
    registry = settings.registry()
    tree = lineage_json(registry, registry.retrieve_by_id(adapter_id))
    if as_json:
        emit_json(tree)
    else:
        click.echo(tree_text(tree))
