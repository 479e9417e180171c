"""`emoflow engines list|install|remove`: speech engines in virtual environments of their own.

An environment is built from the lock file the repository holds for it (engines/<name>/requirements.lock)
and then chosen as `tts_engine: <name>-env`. docs/engines.md describes the protocol and the failures.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kernel.errors import EmoflowError

engines_app = typer.Typer(
    name="engines",
    help="Speech engines in environments of their own, built from the repository's lock files.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
_console = Console()
_errors = Console(stderr=True)
_STYLE = {"installed": "green", "not installed": "dim", "stale": "yellow"}


@engines_app.callback()
def _group() -> None:
    """Speech engines in environments of their own."""


@engines_app.command("list")
def list_environments() -> None:
    """Every engine with a lock file, whether it is installed, its lock digest and where it lives."""
    from models.tts.environments import environment, environments_dir, known_environments

    table = Table(title=f"engine environments in {environments_dir()}")
    table.add_column("engine")
    table.add_column("tts_engine")
    table.add_column("status")
    table.add_column("lock sha256")
    table.add_column("installed at")
    for name in known_environments():
        env = environment(name)
        status = env.status()
        when = str((env.record() or {}).get("installed_at", "")) if status != "not installed" else ""
        table.add_row(name, env.option, Text(status, style=_STYLE[status]), env.lock_digest()[:12], when)
    _console.print(table)


@engines_app.command("install")
def install(
    name: Annotated[
        str, typer.Argument(help="The engine, as `emoflow engines list` names it (e.g. espeak).")
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild even when installed from this lock.")
    ] = False,
) -> None:
    """Build the engine's environment from its lock file and check that the engine speaks there."""
    from models.tts.environments import environment
    from models.tts.environments import install as install_environment

    try:
        env = environment(name)
        if env.status() == "installed" and not force:
            _console.print(
                f"{name} is already installed from this lock in {env.root} (--force rebuilds it); "
                f"use it with tts_engine: {env.option}"
            )
            return
        started = time.perf_counter()
        record = install_environment(env, log=lambda line: _console.print(f"  {line}", highlight=False))
    except EmoflowError as exc:
        _errors.print(Text.assemble(("error: ", "red"), str(exc)), highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from exc
    _console.print(
        Text.assemble(
            (f"installed {name}", "green"),
            f" ({record['engine']}@{record['engine_version']}, lock {record['lock_sha256'][:12]}) "
            f"in {time.perf_counter() - started:.1f} s; use it with tts_engine: {env.option}",
        )
    )


@engines_app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="The engine whose environment to delete (its lock stays).")],
) -> None:
    """Delete an engine's built environment."""
    from models.tts.environments import environment
    from models.tts.environments import remove as remove_environment

    try:
        env = environment(name)
    except EmoflowError as exc:
        _errors.print(Text.assemble(("error: ", "red"), str(exc)), highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from exc
    removed = remove_environment(env)
    _console.print(f"removed {env.root}" if removed else f"{name} was not installed in {env.root}")
