"""`emoflow evaluate ...`: measure engines against the issue's goals on real data.

Register in emoflow/cli.py with:

    from emoflow.commands.evaluate import evaluate_app
    app.add_typer(evaluate_app, name="evaluate")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from emoflow.errors import EmoflowError

evaluate_app = typer.Typer(
    name="evaluate",
    help="Evaluate engines on real data (portraits, clips) and write reports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
_console = Console()
_errors = Console(stderr=True)


@evaluate_app.callback()
def _group() -> None:
    """Evaluate engines on real data (portraits, clips) and write reports."""


@evaluate_app.command("render")
def render(
    portraits: Annotated[Path, typer.Option("--portraits", help="Folder of portrait images (.jpg/.png).")],
    out: Annotated[Path, typer.Option("--out", help="Where report.json and contact sheets go.")] = Path(
        "outputs/evaluate/render"
    ),
    intensity: Annotated[float, typer.Option(help="Emotion intensity of every clip (0..1).")] = 1.0,
    seconds: Annotated[float, typer.Option(help="Length of each clip in seconds.")] = 3.0,
    emotions: Annotated[
        str, typer.Option(help="Comma-separated emotions.")
    ] = "neutral,happy,sad,angry,fear,surprise,disgust",
    seed: Annotated[int, typer.Option(help="Seed for speech, blinks and head motion.")] = 0,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Render (portrait x emotion) clips with the preview renderer and score them with the FER judge:
    EF-agreement, lip sync, identity drift and background SSIM; portraits without a face are skipped."""
    from models.evaluate.render import RenderEvalConfig, evaluate_render

    config = RenderEvalConfig(
        emotions=tuple(e.strip() for e in emotions.split(",") if e.strip()),
        intensity=intensity,
        seconds=seconds,
        seed=seed,
    )
    try:
        report = evaluate_render(portraits, out, config, log=lambda m: _console.print(Text(m)))
    except EmoflowError as exc:
        if debug:
            raise
        _errors.print(Text.assemble(("error: ", "red"), str(exc).splitlines()[0]), highlight=False)
        raise typer.Exit(code=1) from None
    summary = report.to_dict()["summary"]
    _console.print_json(json.dumps(summary))
    _console.print(f"report: {out / 'report.json'}")
    for sheet in report.contact_sheets:
        _console.print(f"contact sheet: {sheet}")
