"""Serving command: ``resolve``, a name to a verified adapter and what a server's command line
needs to load it (vLLM's ``--lora-modules``, SGLang's ``--lora-paths``)."""

from __future__ import annotations

import shlex

import click

from ..errors import AdapterNotFoundError
from ..serving import BEST_PREFIX, ServedAdapter
from .app import BadUsage, Settings
from .output import emit_json, json_option, shown

__all__ = ["resolve"]

#: The flag of each server that loads adapters named on its command line, as ``name=path``.
SERVER_FLAGS = {"vllm": "--lora-modules", "sglang": "--lora-paths"}
FORMATS = ("text", "json", *SERVER_FLAGS)


def server_flag(served: ServedAdapter, server: str) -> str:
    """``--lora-modules NAME=PATH`` (vLLM) or ``--lora-paths NAME=PATH`` (SGLang), quoted for a
    POSIX shell."""
    return f"{SERVER_FLAGS[server]} {shlex.quote(f'{served.name}={served.directory}')}"


@click.command()
@click.argument("name")
@click.option("--base-model", "-b", help="The base model the server runs: another is refused.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="text (the default), json, or the server flag: vllm or sglang.",
)
@json_option
@click.pass_obj
def resolve(
    settings: Settings, /, name: str, base_model: str | None, fmt: str | None, as_json: bool
) -> None:
    """Resolve a name to a verified adapter, for a server.

    NAME is a full id, an alias, best:TASK (the best evaluated live adapter of that task, of
    --base-model where given) or, as elsewhere on the command line, a unique id prefix of 8+
    hex digits (the prefix is expanded: the server gets the full id). The adapter's files
    are hashed against its record first; exit status 1 for an unknown name, another base
    model or a failed check.

    \b
    Example:
      adapter-registry resolve best:bug-fix --base-model Qwen/Qwen2.5-Coder-7B --json
      vllm serve Qwen/Qwen2.5-Coder-7B --enable-lora \\
          $(adapter-registry resolve production --format vllm)
    """
    if as_json and fmt not in (None, "json"):
        raise BadUsage(f"give --json or --format {fmt}, not both")
    fmt = "json" if as_json else fmt or "text"
    registry = settings.registry()
    try:
        served = registry.resolve(name, base_model_id=base_model)
    except AdapterNotFoundError:
        if name.startswith(BEST_PREFIX):
            raise
        # Not an id or an alias: an id prefix, or the other commands' "no adapter" error.
        served = registry.resolve(settings.adapter_id(name), base_model_id=base_model)
    if fmt == "json":
        emit_json(served.to_dict())
    elif fmt in SERVER_FLAGS:
        click.echo(shown(server_flag(served, fmt)))
    else:
        fields = {**served.to_dict(), "verified": "ok (files match the record)"}
        width = max(map(len, fields))
        for key, value in fields.items():
            click.echo(f"{key:<{width}}  {shown(value)}")
