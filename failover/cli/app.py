"""
The root ``failover`` command group, its shared option decorators, and the one place errors are reported.

Commands get their environment from :func:`workspace_options` (``--home``/``$FAILOVER_HOME`` for the
embedded default, ``--config``/``$FAILOVER_CONFIG`` for a TOML file) and their output mode from
:func:`output_options` (``--json`` or ``--table``). Any failover, store, machine or OS error raised by a
command ends as one line, ``ClassName: message``, on stderr with exit status 1; ``--verbose`` adds
the traceback.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import signal
import sqlite3
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

import click

from failover.config import Config, UploadDefaults, load_config
from failover.environment import Environment, request_owner
from failover.errors import FailoverError, InvalidInput, UploadFailed
from failover.executor import ExecutorPolicy
from failover.uploads import latest_upload
from failover.validation import validate_lfn
from failover.validation.names import CatalogChoice
from failover.workspace import DEFAULT_CATALOG, DEFAULT_SES, open_workspace, workspace_home
from fsm.errors import FsmError
from persistence.errors import StoreError
from persistence.rows import MachineRow

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = [
    "FailoverGroup",
    "HANDLED_ERRORS",
    "RICH_TABLE_ROWS",
    "Settings",
    "Stop",
    "Workspace",
    "cli",
    "error_line",
    "find_upload",
    "literal",
    "new_table",
    "output_options",
    "print_json",
    "print_table",
    "stderr",
    "stdout",
    "stopping_on_signals",
    "workspace_options",
]

F = TypeVar("F", bound=Callable[..., Any])

#: What a command may raise and the root group reports as one line (exit status 1).
HANDLED_ERRORS: tuple[type[BaseException], ...] = (
    FailoverError,
    StoreError,
    FsmError,
    sqlite3.Error,
    OSError,
)

#: Without a terminal, rich would wrap tables at 80 columns; LFNs are longer than that.
_PIPE_WIDTH = 200
#: Tables up to this many rows are drawn by rich; longer ones are printed as aligned plain text.
RICH_TABLE_ROWS = 100


def stdout() -> Console:
    """
    The console for results (stdout).

    Markup is off, on both consoles: what they print is mostly data (an LFN, a path or an error may hold
    ``[...]``). A line that wants style passes ``markup=True`` and wraps its data in :func:`literal`.
    """
    from rich.console import Console  # here: rich loads in ~50 ms, which --json output never needs

    return Console(width=None if sys.stdout.isatty() else _PIPE_WIDTH, highlight=False, markup=False)


def new_table(*headers: str) -> Table:
    """A rich table with these column headers (rich is loaded on first use)."""
    from rich.table import Table

    return Table(*headers)


def literal(value: object) -> str:
    """
    ``value`` as text that rich prints as it is: an LFN, a path or an error message may hold ``[...]``,
    which rich would otherwise read as markup (and drop, restyle, or fail on).

    Example:
        >>> print(literal("/vo/run[/2024]/out.root"))
        /vo/run\\[/2024]/out.root
    """
    from rich.markup import escape

    return escape(str(value))


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, styles: Sequence[str | None] | None = None
) -> None:
    """
    Print ``rows`` of plain text (nothing in them is read as markup) under ``headers`` on stdout.

    Up to :data:`RICH_TABLE_ROWS` rows, as a rich table, each row in its style from ``styles`` (``"red"``,
    say; None for none). Beyond, as aligned plain text without style: rich takes about half a millisecond
    a row, a second for the 2,000 files of one ``failover upload``, as long as the upload itself.
    """
    if len(rows) <= RICH_TABLE_ROWS:
        from rich.text import Text

        table = new_table(*headers)
        for index, row in enumerate(rows):
            table.add_row(*map(Text, row), style=styles[index] if styles else None)
        stdout().print(table)
        return
    from rich.cells import cell_len  # display width: wide characters take two columns

    widths = [max(cell_len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell + " " * (width - cell_len(cell)) for cell, width in zip(cells, widths[:-1], strict=False)
        ]
        return "  ".join([*padded, cells[-1]])

    rule = ["-" * width for width in widths]
    click.echo("\n".join([line(headers), line(rule), *map(line, rows)]))


def stderr() -> Console:
    """The console for progress, narrative and errors (stderr)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, markup=False)


def print_json(value: Any) -> None:
    """Write ``value`` as indented JSON on stdout (times and paths as strings)."""
    click.echo(json.dumps(value, indent=2, default=str))


@dataclass
class Stop:
    """The first SIGINT or SIGTERM received (None: none yet), and the event it set."""

    event: threading.Event = field(default_factory=threading.Event)
    signum: int | None = None

    def exit_if_stopped(self, left: str) -> None:
        """
        After a stop, say what was ``left`` on stderr and end the command with status 128 + the signal.

        Raises:
            click.exceptions.Exit: a signal stopped the command.
        """
        if self.signum is not None:
            click.echo(f"stopped by {signal.Signals(self.signum).name}: {left}", err=True)
            raise click.exceptions.Exit(128 + self.signum)


@contextmanager
def stopping_on_signals() -> Iterator[Stop]:
    """
    While a long command runs (an upload, a resume), SIGINT (Ctrl-C) and SIGTERM set ``stop.event``, for
    the work to stop cleanly: the batch at hand is finished, and what was done is committed and reported.
    A second signal aborts at once (``failover resume`` finishes what that leaves in flight).
    """
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers can only be set from the main thread
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.signum is not None:
            raise KeyboardInterrupt
        stop.signum = signum
        stop.event.set()
        name = signal.Signals(signum).name
        click.echo(f"{name}: stopping once the batch at hand is done (again to abort)", err=True)

    previous = {signum: signal.signal(signum, handle) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@dataclass
class Settings:
    """Options of the root group that every command sees."""

    verbose: bool = False


def error_line(err: BaseException) -> str:
    """
    One line for an error: ``ClassName: message``, with each SE's reason for a total upload failure.

    Example:
        >>> error_line(InvalidInput("LFN 'x' is not absolute"))
        "InvalidInput: LFN 'x' is not absolute"
    """
    message = str(err)
    if isinstance(err, UploadFailed) and err.errors:
        message += " (" + "; ".join(f"{se}: {why}" for se, why in err.errors.items()) + ")"
    return f"{type(err).__name__}: {' '.join(message.split())}"


class FailoverGroup(click.Group):
    """
    A command group that reports the errors of its commands as one line and exits with status 1.

    Commands may be registered by import path (:meth:`add_lazy_command`): a command's module, and what
    only it needs (the diagram renderer and networkx for ``diagram``, say), is imported when that
    command is run or listed, not at every start (click's "lazily loading subcommands" pattern).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Command name -> ``"module:attribute"``, in the order they were added.
        self.lazy_commands: dict[str, str] = {}

    def add_lazy_command(self, name: str, import_path: str) -> None:
        """
        Register the command ``name`` found at ``import_path`` (``"package.module:attribute"``).

        Raises:
            ValueError: ``import_path`` has no ``:``.
        """
        if ":" not in import_path:
            raise ValueError(f"lazy command {name!r}: import path {import_path!r} is not 'module:attribute'")
        self.lazy_commands[name] = import_path

    def list_commands(self, ctx: click.Context) -> list[str]:
        """The commands in the order they were added (a user's path through them), not alphabetically."""
        return [*self.lazy_commands, *(name for name in self.commands if name not in self.lazy_commands)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command ``cmd_name``, importing its module on first use; None for an unknown name."""
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            module_name, attribute = self.lazy_commands[cmd_name].split(":", 1)
            command = getattr(importlib.import_module(module_name), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"lazy command {cmd_name!r}: {self.lazy_commands[cmd_name]} is not a command")
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a handled error becomes one line on stderr (with ``--verbose``, a traceback)."""
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # Whoever read the output stopped (`failover upload *.root | head`): not an error to report.
            # Click ends such a command quietly with status 1, as it does when the pipe breaks after it.
            raise
        except HANDLED_ERRORS as err:
            settings = ctx.find_object(Settings)
            if settings is not None and settings.verbose:
                traceback.print_exception(err, file=sys.stderr)
            click.echo(error_line(err), err=True)
            ctx.exit(1)


@click.group(cls=FailoverGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show the traceback of an error.")
@click.version_option(package_name="failover-transfer", prog_name="failover")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """
    Get files safely onto storage and into the catalog, with failover, as durable state machines.

    Every upload is a persisted state machine; the requests it emits (register, replicate to the
    target, remove the temporary replica) are run by the executor. The workspace is
    $FAILOVER_HOME (default ./.failover) unless --config names a TOML file.

    \b
    Example:
        failover demo
        failover upload out.root --lfn /vo/user/a/alice/out.root --dest LOCAL-DISK
        failover status
    """
    ctx.ensure_object(Settings).verbose = verbose
    # Library warnings (an operation failed for good, say) as plain lines; INFO too with --verbose.
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(name)s: %(message)s")


@dataclass
class Workspace:
    """
    Where a command's environment comes from; opened on first use and closed when the command ends.

    Args:
        home: the embedded default's directory (used when ``config`` is None).
        config: a TOML configuration file.
    """

    home: Path
    config_file: Path | None = None
    _config: Config | None = field(default=None, repr=False)
    _env: Environment | None = field(default=None, repr=False)

    @property
    def config(self) -> Config | None:
        """The checked configuration, or None for the embedded default."""
        if self.config_file is not None and self._config is None:
            self._config = load_config(self.config_file)
        return self._config

    @property
    def env(self) -> Environment:
        """The environment, opened (and the database created) on first use."""
        if self._env is None:
            self._env = self.opener()()
        return self._env

    def opener(self) -> Callable[[], Environment]:
        """Opens a new environment like :attr:`env` does, in any process (it pickles)."""
        config = self.config
        return config.open if config is not None else functools.partial(open_workspace, self.home)

    @property
    def request_owner(self) -> tuple[str, str]:
        """The (owner, owner group) of new requests, known without opening the environment."""
        config = self.config
        return request_owner(config.owner, config.owner_group) if config is not None else request_owner()

    @property
    def policy(self) -> ExecutorPolicy:
        """The executor's policy: the configuration's, else the defaults."""
        return self.config.executor if self.config is not None else ExecutorPolicy()

    @property
    def poll_interval(self) -> float:
        """Seconds between polls of a looping executor."""
        return self.config.poll_interval if self.config is not None else 5.0

    @property
    def upload_defaults(self) -> UploadDefaults:
        """Defaults of ``failover upload``: the configuration's, else the embedded default's two SEs."""
        if self.config is not None:
            return self.config.upload
        return UploadDefaults(destinations=DEFAULT_SES[:1], failovers=DEFAULT_SES[1:])

    @property
    def storage_names(self) -> list[str]:
        """The configured storage elements' names, known without opening the environment."""
        config = self.config
        return [se.name for se in config.storage] if config is not None else list(DEFAULT_SES)

    @property
    def catalog_choices(self) -> list[CatalogChoice]:
        """The configured catalogs as the input validator sees them, known without opening anything."""
        config = self.config
        if config is None:
            return [CatalogChoice(DEFAULT_CATALOG, True)]
        return [CatalogChoice(catalog.name, catalog.master) for catalog in config.catalogs]

    def close(self) -> None:
        """Close the database and the catalogs' connections if they were opened."""
        if self._env is not None:
            self._env.close()


def _set_verbose(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(Settings).verbose = True
        logging.getLogger().setLevel(logging.INFO)


def workspace_options(command: F) -> F:
    """
    Add ``--home``, ``--config`` and ``--verbose``; the command gets a :class:`Workspace` as ``workspace``.
    """

    @click.option(
        "--home",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="FAILOVER_HOME",
        help="Workspace of the embedded default [env: FAILOVER_HOME; default: ./.failover].",
    )
    @click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="FAILOVER_CONFIG",
        help="TOML configuration file; replaces the workspace [env: FAILOVER_CONFIG].",
    )
    @click.option(
        "-v", "--verbose", is_flag=True, expose_value=False, callback=_set_verbose, help="Show tracebacks."
    )
    @functools.wraps(command)
    def wrapper(*args: Any, home: Path | None, config_file: Path | None, **kwargs: Any) -> Any:
        root = (home or workspace_home()).expanduser().absolute()
        workspace = Workspace(root, config_file)
        click.get_current_context().call_on_close(workspace.close)
        return command(*args, workspace=workspace, **kwargs)

    return wrapper  # type: ignore[return-value]


def output_options(command: F) -> F:
    """Add ``--json/--table`` (default: a table); the command receives ``as_json``."""
    return click.option(
        "--json/--table", "as_json", default=False, help="Print JSON for scripts, or a table (default)."
    )(command)


def find_upload(env: Environment, lfn: str) -> MachineRow:
    """
    The latest upload of ``lfn`` (a new generation starts only after a Failed one).

    Raises:
        InvalidInput: the LFN is not valid, or it was never uploaded here.
    """
    validate_lfn(lfn)
    latest = latest_upload(env, lfn)
    if latest is None:
        raise InvalidInput(f"no upload of {lfn} in {env.store.path}", lfn=lfn)
    return latest
