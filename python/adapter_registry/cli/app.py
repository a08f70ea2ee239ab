"""The root command: global options, the registry they name, and errors as one line.

Every failure reaches the user as one line on stderr, ``error: <what>``, with a non-zero exit
status: 1 for a failed operation (no such adapter, bad input, a storage failure), 2 for a
command line that cannot be run as given. ``--debug`` lets the exception through, traceback and all.
"""

from __future__ import annotations

import builtins
import importlib
import keyword
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from .. import __version__
from ..errors import AdapterNotFoundError, InvalidAdapterError
from ..home import home_db_url, home_root
from ..registry import AdapterRegistry
from .output import shown

_FULL_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: A short id: 8 or more leading characters of one.
_PREFIX = re.compile(r"[0-9a-f]{8}[0-9a-f-]{0,28}")

if TYPE_CHECKING:
    from sqlalchemy import URL

__all__ = ["COMMANDS", "PROG", "BadUsage", "CommandError", "Settings", "cli"]

PROG = "adapter-registry"

#: Command name -> its module in this package, in the order ``--help`` lists them. A module is
#: imported when its command runs (or ``--help`` describes it), never before. The command is
#: the module's attribute of that name, or of that name and '_' where it is a builtin's or a
#: keyword (eval, import).
COMMANDS = {
    "ls": "read",
    "show": "read",
    "best": "read",
    "lineage": "lineage",
    "stats": "stats",
    "store": "write",
    "fitness": "write",
    "eval": "evaluate",
    "alias": "promote",
    "tag": "promote",
    "archive": "write",
    "unarchive": "write",
    "verify": "integrity",
    "recover": "integrity",
    "resolve": "serve",
    "export": "transfer",
    "import": "transfer",
    "backup": "transfer",
    "demo": "demo",
    "ui": "ui",
}


def one_line(text: str) -> str:
    return " ".join(text.split())


class CommandError(click.ClickException):
    """A failure, shown as ``error: <message>`` on one line; exit status 1."""

    def __init__(self, message: str) -> None:
        # shown(): a message may quote a name from the disk or the database.
        super().__init__(shown(one_line(message)))

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=file is None)


class BadUsage(CommandError):
    """A command line that cannot be run as given; exit status 2."""

    exit_code = 2


def describe(err: BaseException) -> str:
    """What went wrong, for a user: the registry's messages are written for them already."""
    from ..errors import AdapterRegistryError

    if isinstance(err, AdapterRegistryError):
        return str(err)
    if isinstance(err, OSError) and err.strerror:
        where = f"{err.filename}: " if err.filename else ""
        return f"{where}{err.strerror}"
    return f"unexpected {type(err).__name__}: {err} (--debug shows the traceback)"


#: What click >= 8.2 raises for a group given no command: it shows the group's help (exit 2),
#: which must stay whole rather than be squeezed onto one error line.
_HELP: tuple[type[BaseException], ...] = tuple(
    error for error in [getattr(click.exceptions, "NoArgsIsHelpError", None)] if error is not None
)


#: The root command's own options, which a command after it does not take.
GLOBAL_OPTIONS = ("--home", "--root", "--db-url", "--debug")


def _usage(err: click.UsageError) -> CommandError:
    if isinstance(err, click.NoSuchOption) and err.option_name in GLOBAL_OPTIONS:
        command = err.ctx.info_name if err.ctx is not None else "COMMAND"
        return BadUsage(
            f"{err.option_name} is a global option: put it before the command, as in "
            f"'{PROG} {err.option_name} ... {command} ...'"
        )
    hint = f" (see '{err.ctx.command_path} --help')" if err.ctx is not None else ""
    return BadUsage(err.format_message() + hint)


@dataclass
class Settings:
    """The global options; the registry they name is opened on first use, closed at exit."""

    home: Path | None
    root: Path | None
    db_url: str | None
    debug: bool
    #: Whether --home was given on the command line (the demo takes it, never RUNE_HOME).
    home_from_command_line: bool = False
    _registry: AdapterRegistry | None = None

    #: Whether --db-url came from $RUNE_DB_URL (a --home on the command line then wins).
    db_url_from_env: bool = False

    def registry(self, create: bool = False, adopt: bool = False) -> AdapterRegistry:
        """The registry the options name, opened on first use. Only the commands that may
        make a registry (store, import, demo, recover --adopt) pass ``create=True``; for every
        other one a registry that is not there is "no registry at ...", and nothing is
        created. ``adopt`` is recover --adopt's (``AdapterRegistry(adopt=True)``)."""
        if self._registry is None:
            root = self.root
            db_url: str | URL | None = self.db_url
            if self.home is not None:
                if self.home_from_command_line and self.db_url_from_env:
                    db_url = None  # as the API's home=: $RUNE_DB_URL is not read
                root = root or home_root(self.home)
                db_url = db_url or home_db_url(self.home)
            self._registry = AdapterRegistry(root=root, db_url=db_url, create=create, adopt=adopt)
        return self._registry

    def adapter_id(self, name: str) -> str:
        """The adapter a person named: a full id, else an alias, else a unique prefix of an id
        of at least 8 hex digits, as in git. An alias can never look like a prefix."""
        if _FULL_ID.fullmatch(name):
            return name
        registry = self.registry()
        try:
            return registry.resolve_alias(name).id
        except (AdapterNotFoundError, InvalidAdapterError):
            pass
        if _PREFIX.fullmatch(name):
            found = registry._ids_with_prefix(name)
            if len(found) == 1:
                return found[0]
            if found:
                listed = ", ".join(found[:10]) + (", ..." if len(found) > 10 else "")
                raise CommandError(f"id prefix {name} is ambiguous: it starts {listed}")
        raise CommandError(f"no adapter, alias or id prefix {name!r}")

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()
            self._registry = None


#: What a command's run lets through as it is.
_HELP_OR_OURS: tuple[type[BaseException], ...] = (CommandError, *_HELP)
_PASSED_ON: tuple[type[BaseException], ...] = (
    *_HELP_OR_OURS,
    click.exceptions.Exit,
    click.Abort,
    BrokenPipeError,
)


class RegistryGroup(click.Group):
    """Commands loaded on demand; every error of a command turned into one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        reserved = hasattr(builtins, cmd_name) or keyword.iskeyword(cmd_name)  # eval, import
        attribute = f"{cmd_name}_" if reserved else cmd_name
        command = getattr(importlib.import_module(f"{__package__}.{module}"), attribute)
        assert isinstance(command, click.Command)
        return command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except _HELP_OR_OURS:
            raise
        except click.UsageError as err:
            raise _usage(err) from err

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _PASSED_ON:
            raise
        except click.UsageError as err:
            raise _usage(err) from err
        except click.ClickException as err:
            kind = BadUsage if err.exit_code == 2 else CommandError
            raise kind(err.format_message()) from err
        except Exception as err:
            if ctx.params.get("debug"):
                raise
            raise CommandError(describe(err)) from err


def _absolute(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    return None if value is None else value.expanduser().absolute()


@click.group(
    cls=RegistryGroup,
    name=PROG,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="RUNE_HOME",
    callback=_absolute,
    help="Registry home: adapters in HOME/adapters, metadata in HOME/adapter_registry.db "
    "[env RUNE_HOME; default ~/.rune].",
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    callback=_absolute,
    help="Adapter root directory, alone (overrides the home's).",
)
@click.option(
    "--db-url",
    envvar="RUNE_DB_URL",
    help="SQLAlchemy database URL, alone (overrides the home's) [env RUNE_DB_URL].",
)
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
@click.version_option(__version__, prog_name=PROG, message="%(prog)s %(version)s")
@click.pass_context
def cli(
    ctx: click.Context, home: Path | None, root: Path | None, db_url: str | None, debug: bool
) -> None:
    """A write-once store of LoRA adapters, from the shell: list, rank, name, store, verify.

    Every command takes --json for stable machine-readable output, and each that lists takes
    --jsonl, one JSON object per line (see the README's "Command line" section for the keys).
    Exit status: 0 done, 1 failed (or a check found a problem), 2 bad usage.

    \b
    Example:
      adapter-registry --home /srv/rune ls --task-type bug-fix --sort fitness --limit 5
    """
    source = ctx.get_parameter_source("home")
    settings = Settings(
        home=home,
        root=root,
        db_url=db_url,
        debug=debug,
        home_from_command_line=source is click.core.ParameterSource.COMMANDLINE,
        db_url_from_env=ctx.get_parameter_source("db_url")
        is click.core.ParameterSource.ENVIRONMENT,
    )
    ctx.obj = settings
    ctx.call_on_close(settings.close)
    if ctx.invoked_subcommand is None:  # no command: the help, and success (click says 2)
        click.echo(ctx.get_help())
        ctx.exit(0)
