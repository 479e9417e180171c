"""`emoflow weights check DIR`: is a folder of Hallo's downloads complete, readable and the right model?

Runs without a GPU and without reading tensor data: net.pth is memory-mapped for its names and shapes,
the safetensors files are read for their headers only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

weights_app = typer.Typer(
    name="weights",
    help="Check diffusion renderer weights (Hallo's pretrained_models folder).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
_console = Console()
_STYLE = {"ok": "green", "not read": "dim", "missing": "red", "unreadable": "red", "mismatch": "red"}


@weights_app.callback()
def _group() -> None:
    """Check diffusion renderer weights."""


@weights_app.command("check")
def check(
    directory: Annotated[Path, typer.Argument(help="Hallo's pretrained_models folder (docs/diffusion.md)")],
) -> None:
    """Name each file found, whether net.pth's tensors load, and one line per missing file."""
    from models.render.diffusion.weights import check_weights  # torch and diffusers: only when asked

    report = check_weights(directory)
    table = Table(title=f"diffusion weights in {report.root}", show_lines=False)
    table.add_column("file", overflow="fold")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    for item in report.files:
        table.add_row(item.path, Text(item.status, style=_STYLE.get(item.status, "")), item.detail)
    _console.print(table)
    if report.expected_tensors:
        _console.print(
            f"net.pth: {report.loadable_tensors} of {report.expected_tensors} tensors load "
            "(names and shapes as Hallo's model expects)"
        )
        for part, (loadable, expected) in report.per_part.items():
            _console.print(f"  {part}: {loadable} of {expected}")
    if not report.ok:
        for line in report.problems():
            _console.print(
                Text.assemble(("missing or wrong: ", "red"), line), highlight=False, soft_wrap=True
            )
        raise typer.Exit(code=1)
    _console.print(Text("all files the renderer reads are present and load", style="green"))
