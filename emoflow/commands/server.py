"""`emoflow server status|start|stop`: the local Prefect server this EMOFLOW_HOME's commands share."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.text import Text

from kernel.errors import EmoflowError

server_app = typer.Typer(
    name="server",
    help="The local Prefect server shared by this home's commands (started on first use, then kept).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
_console = Console()
_errors = Console(stderr=True)


@server_app.callback()
def _group() -> None:
    """The local Prefect server shared by this home's commands."""


@server_app.command("status")
def status() -> None:
    """Say whether the home's server runs, its pid and URL; exit 1 when none runs."""
    from emoflow.prefect_server import prefect_home
    from emoflow.prefect_server import status as server_status

    info = server_status()
    if info is None:
        _console.print(f"no Prefect server runs for {prefect_home()}")
        raise typer.Exit(code=1)
    _console.print(f"Prefect server pid {info.pid} at {info.url}, started {info.started_at}; log {info.log}")


@server_app.command("start")
def start() -> None:
    """Start the home's server now (commands otherwise start it when they first need it)."""
    from emoflow.prefect_server import start as server_start

    try:
        info = server_start()
    except EmoflowError as exc:
        _errors.print(Text.assemble(("error: ", "red"), str(exc)), highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from exc
    _console.print(f"Prefect server pid {info.pid} at {info.url}")


@server_app.command("stop")
def stop() -> None:
    """Stop the home's server (the next command that needs one starts it again)."""
    from emoflow.prefect_server import stop as server_stop

    info = server_stop()
    _console.print(
        "no Prefect server was running" if info is None else f"stopped Prefect server pid {info.pid}"
    )
