"""`emoflow serve` and `emoflow tokens ...`: the inspector and the tokens that open it.

Register with `emoflow.commands.web.register(app)` in `emoflow/cli.py`.
"""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from emoflow.prefect_server import use_shared_server
from kernel.errors import EmoflowError
from kernel.settings import get_settings

if TYPE_CHECKING:
    from stores.store import ArtifactStore

console = Console()
errors = Console(stderr=True)
tokens_app = typer.Typer(help="API tokens for the inspector (stored hashed).", no_args_is_help=True)


def _fail(exc: BaseException) -> None:
    errors.print(Text.assemble(("error: ", "red"), str(exc)), highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _store() -> ArtifactStore:  # the import is lazy: it keeps `emoflow --help` fast
    from stores.store import ArtifactStore

    return ArtifactStore.from_settings(get_settings())


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Flows that may run at once.", min=1, max=16)] = 2,
) -> None:
    """Serve the inspector and submission API (pages at /ui/runs, API docs at /docs)."""
    import uvicorn

    from emoflow.web.app import create_app

    try:
        use_shared_server()  # the jobs' flows report to the home's server, which outlives this one
        app = create_app(workers=workers)
    except EmoflowError as exc:
        _fail(exc)
        return
    console.print(f"inspector on http://{host}:{port}/ui/runs  (API docs: http://{host}:{port}/docs)")
    # one process: the flow threads and the launcher's bookkeeping live in it
    uvicorn.run(app, host=host, port=port, log_level="warning")


@tokens_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="Who uses the token; recorded as the actor of its writes.")],
    role: Annotated[str, typer.Option(help="submitter (read and write) or viewer (read only).")] = "viewer",
) -> None:
    """Create a token and print it once; only its sha256 is stored."""
    from stores.tokens import create_token

    try:
        token, secret = create_token(_store(), name, role, actor=_operator())
    except EmoflowError as exc:
        _fail(exc)
        return
    errors.print(f"token {token.name!r} ({token.role}) created; it is shown only this once:")
    print(secret)  # plain stdout, so `TOKEN=$(emoflow tokens create ...)` works


@tokens_app.command("list")
def list_() -> None:
    """Token names, roles and dates (never the secrets)."""
    from stores.tokens import list_tokens

    try:
        records = list_tokens(_store())
    except EmoflowError as exc:
        _fail(exc)
        return
    table = Table("name", "role", "created", "revoked")
    for t in records:
        revoked = t.revoked_at.isoformat()[:19] if t.revoked_at else ""
        table.add_row(t.name, t.role, t.created_at.isoformat()[:19], revoked)
    console.print(table)


@tokens_app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="The token's name.")]) -> None:
    """Stop a token from working."""
    from stores.tokens import revoke_token

    try:
        revoke_token(_store(), name, actor=_operator())
    except EmoflowError as exc:
        _fail(exc)
        return
    console.print(f"token {name!r} revoked")


def register(app: typer.Typer) -> None:
    """Add `serve` and the `tokens` group to the main `emoflow` app."""
    app.command("serve")(serve)
    app.add_typer(tokens_app, name="tokens")
