"""`emoflow evaluate ...`: measure engines against the issue's goals on real data.

Register in emoflow/cli.py with:

    from emoflow.commands.evaluate import evaluate_app
    app.add_typer(evaluate_app, name="evaluate")
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kernel.errors import EmoflowError, InputError

if TYPE_CHECKING:
    from models.evaluate.classification import ClassificationReport

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
    expressions: Annotated[
        str, typer.Option(help="real (MEAD actors' motion, the default) or facs (1.3.0's hand-tuned rows).")
    ] = "real",
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Render (portrait x emotion) clips with the preview renderer and score them: EF-agreement by the FER
    judge, lip sync, identity drift, background SSIM, and naturalness (each face region's move against real
    actors' range, wavy or crossed lips); portraits without a human face are skipped."""
    from models.evaluate.render import RenderEvalConfig, evaluate_render

    config = RenderEvalConfig(
        emotions=tuple(e.strip() for e in emotions.split(",") if e.strip()),
        intensity=intensity,
        seconds=seconds,
        seed=seed,
        expressions=expressions,
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


# -- emoflow evaluate efp ---------------------------------------------------------------------------------

EFP_EVALUATIONS = ("emodb", "ckplus", "descriptions", "mead")
_REPO = Path(__file__).resolve().parents[2]
_DEFAULT_CASES = _REPO / "tests" / "data" / "description_cases.yaml"


class _Skipped(Exception):
    """An evaluation whose data (or code) is not there: reported, not fatal."""


@evaluate_app.command("efp")
def efp(
    data: Annotated[Path, typer.Option("--data", help="Shared data root with emodb/, ckplus48/, mead/.")],
    out: Annotated[Path, typer.Option("--out", help="Where report.json and confusion PNGs go.")] = Path(
        "outputs/evaluate/efp"
    ),
    only: Annotated[
        str, typer.Option("--only", help=f"Comma-separated subset of {','.join(EFP_EVALUATIONS)}.")
    ] = ",".join(EFP_EVALUATIONS),
    cases: Annotated[
        Path | None, typer.Option("--cases", help="Description case set (default tests/data/...yaml).")
    ] = None,
    features: Annotated[
        str, typer.Option(help="EFP features for EmoDB: embedded or emotion2vec.")
    ] = "embedded",
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Score emotion labelling: the learned EFP on EmoDB (held-out speakers), the facial-emotion judge on
    CK+, the description planner on its case set and the pseudo-labeller on MEAD clips. Writes report.json
    and one confusion PNG per evaluation; missing data is reported and skipped."""
    try:
        names = [n.strip() for n in only.split(",") if n.strip()]
        unknown = sorted(set(names) - set(EFP_EVALUATIONS))
        if unknown or not names:
            raise InputError(
                f"unknown evaluation {unknown or only!r}; choose from {', '.join(EFP_EVALUATIONS)}"
            )
        if not data.is_dir():
            raise InputError(f"data folder not found: {data}")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the output folder {out}: {exc.strerror}") from None
        runners: dict[str, Callable[[], dict[str, Any]]] = {
            "emodb": lambda: _emodb(data / "emodb", out, features),
            "ckplus": lambda: _ckplus(data / "ckplus48", out),
            "descriptions": lambda: _descriptions(cases or _DEFAULT_CASES, out),
            "mead": lambda: _mead(data / "mead", out),
        }
        sections: dict[str, dict[str, Any]] = {}
        for name in names:
            _console.print(Text(f"{name}: evaluating ..."))
            try:
                sections[name] = {"status": "ok", **runners[name]()}
            except _Skipped as exc:
                sections[name] = {"status": "skipped", "reason": str(exc)}
            except EmoflowError as exc:
                if debug:
                    raise
                sections[name] = {"status": "failed", "reason": str(exc).splitlines()[0]}
        report = out / "report.json"
        _write_json(report, {"data": str(data), "evaluations": sections})
        _console.print(_efp_table(sections))
        _console.print(f"report: {report}")
        if not any(s["status"] == "ok" for s in sections.values()):
            reasons = "; ".join(f"{k}: {v['reason']}" for k, v in sections.items())
            raise InputError(f"nothing could be evaluated ({reasons})")
    except EmoflowError as exc:
        if debug:
            raise
        message = Text.assemble(("error: ", "red"), str(exc).splitlines()[0])
        _errors.print(message, highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None


def _log(message: str) -> None:
    _console.print(Text(message), soft_wrap=True)  # one line per message, as in a log


def _emodb(folder: Path, out: Path, features: str) -> dict[str, Any]:
    if not (folder / "labels.csv").is_file():
        raise _Skipped(f"{folder} has no labels.csv")
    try:
        from models.evaluate.efp_emodb import evaluate_emodb
    except ImportError as exc:
        raise _Skipped(f"the EmoDB evaluation is not available ({exc})") from None
    result = evaluate_emodb(folder, out / "emodb", features=features, log=_log)
    # it writes its own PNGs; the word-level one is the headline (words are what the EFP labels)
    pngs = sorted((out / "emodb").rglob("*.png"), key=lambda p: ("word" not in p.name, p.name))
    return {**_headline(result), "confusion_png": str(pngs[0]) if pngs else None, "result": result}


def _ckplus(folder: Path, out: Path) -> dict[str, Any]:
    from models.evaluate.classification import save_confusion_png
    from models.evaluate.judge import CK_MAP, judge_ckplus

    if not (folder / "labels.csv").is_file():
        raise _Skipped(f"{folder} has no labels.csv")
    judged = judge_ckplus(folder)
    report = judged.report()
    png = save_confusion_png(report, out / "ckplus_confusion.png", "FER judge on CK+ (contempt left out)")
    return {
        "n": report.n,
        "accuracy": report.accuracy,
        "macro_f1": report.macro_f1,
        "confusion_png": str(png),
        "label_map": {**CK_MAP, "contempt": "not scored (no judge class); see contempt_judged_as"},
        "summary": judged.summary(),
        "report": report.to_dict(),
    }


def _descriptions(path: Path, out: Path) -> dict[str, Any]:
    from models.evaluate.classification import save_confusion_png

    if not path.is_file():
        raise _Skipped(f"description case set not found: {path}")
    try:
        from models.evaluate.descriptions import evaluate_description_cases
    except ImportError as exc:
        raise _Skipped(f"the description evaluation is not available ({exc})") from None
    from models.plan.rules import RulePlanner

    result = evaluate_description_cases(path, RulePlanner())
    headline = _headline(result)
    report = _find_report(result)
    png = None
    if report is not None:
        png = str(
            save_confusion_png(report, out / "descriptions_confusion.png", "planner on description cases")
        )
    return {**headline, "confusion_png": png, "result": result}


def _mead(folder: Path, out: Path) -> dict[str, Any]:
    from models.evaluate.classification import save_confusion_png
    from models.evaluate.judge import judge_mead, mead_report

    if not (folder / "labels.csv").is_file():
        raise _Skipped(f"{folder} has no labels.csv")
    clips = judge_mead(folder, log=_log)
    report = mead_report(clips)
    title = "pseudo-labeller frames on MEAD (contempt left out)"
    png = save_confusion_png(report, out / "mead_confusion.png", title)
    agreement = {
        label: float(np.mean([c.agreement for c in clips if c.emotion == label]))
        for label in dict.fromkeys(c.emotion for c in clips)
    }
    windows = {
        label: float(np.mean([c.window_agreement for c in clips if c.emotion == label]))
        for label in agreement
    }
    return {
        "n": report.n,
        "accuracy": report.accuracy,
        "macro_f1": report.macro_f1,
        "confusion_png": str(png),
        "frame_agreement": agreement,
        "window_agreement": windows,
        "frame_agreement_mean": float(np.mean(list(agreement.values()))),
        "clip_majority_accuracy": float(np.mean([c.majority == c.emotion for c in clips])),
        "clips": [
            {
                "path": c.path,
                "emotion": c.emotion,
                "frame_agreement": c.agreement,
                "window_agreement": c.window_agreement,
                "majority": c.majority,
                "frames_without_face": c.frames_without_face,
            }
            for c in clips
        ],
        "report": report.to_dict(),
    }


def _find_report(result: Any) -> ClassificationReport | None:
    """The score_labels report inside another evaluation's result (top level or one level down)."""
    from models.evaluate.classification import ClassificationReport

    candidates = [result, *(result.values() if isinstance(result, dict) else [])]
    for c in candidates:
        if isinstance(c, ClassificationReport):
            return c
        if isinstance(c, dict) and {"labels", "confusion", "accuracy", "macro_f1", "per_class"} <= set(c):
            return ClassificationReport(
                labels=list(c["labels"]),
                accuracy=float(c["accuracy"]),
                macro_f1=float(c["macro_f1"]),
                per_class=dict(c["per_class"]),
                confusion=[list(map(int, row)) for row in c["confusion"]],
                n=int(c.get("n", sum(map(sum, c["confusion"])))),
            )
    return None


def _headline(result: Any) -> dict[str, Any]:
    """n, accuracy and macro-F1 for the table: the result's own figures first, then its report's."""
    report = _find_report(result)
    own = result if isinstance(result, dict) else {}
    accuracy = next(
        (own[k] for k in ("word_accuracy", "accuracy") if isinstance(own.get(k), int | float)), None
    )
    words = own.get("words")  # a word-level accuracy is over this many words
    n = own.get("n", words if isinstance(words, int) else (report.n if report else None))
    return {
        "n": n,
        "accuracy": accuracy if accuracy is not None else (report.accuracy if report else None),
        "macro_f1": own.get("macro_f1", report.macro_f1 if report else None),
    }


def _efp_table(sections: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="emotion labelling")
    for column in ("evaluation", "status", "n", "accuracy", "macro-F1"):
        table.add_column(column, no_wrap=True)
    table.add_column("confusion PNG / reason")

    def pct(value: Any) -> str:
        return f"{100 * value:.1f} %" if isinstance(value, int | float) else "-"

    for name, s in sections.items():
        f1 = s.get("macro_f1")
        table.add_row(
            name,
            s["status"],
            str(s.get("n", "-")),
            pct(s.get("accuracy")),
            f"{f1:.3f}" if isinstance(f1, int | float) else "-",
            Text(Path(s["confusion_png"]).name if s.get("confusion_png") else s.get("reason", "")),
        )
    return table


def _write_json(path: Path, document: dict[str, Any]) -> None:
    def plain(value: Any) -> Any:
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
        if hasattr(value, "to_dict"):
            return value.to_dict()
        return str(value)

    partial = path.with_name(path.name + ".part")
    partial.write_text(json.dumps(document, indent=2, default=plain), encoding="utf-8")
    partial.replace(path)


# -- emoflow evaluate speech ------------------------------------------------------------------------------

SPEECH_ENGINES = ("piper", "espeak")  # the default; any tts_engine a job may name is accepted


@evaluate_app.command("speech")
def speech(
    data: Annotated[Path, typer.Option("--data", help="Shared data root with emodb/ (or the emodb folder).")],
    out: Annotated[Path, typer.Option("--out", help="Where report.json and confusion PNGs go.")] = Path(
        "outputs/evaluate/speech"
    ),
    engines: Annotated[
        str,
        typer.Option(
            "--engines",
            help="Comma-separated TTS engines, as a job's tts_engine names them (an engine environment such "
            "as parler-env must be installed).",
        ),
    ] = ",".join(SPEECH_ENGINES),
    validate: Annotated[
        bool, typer.Option("--validate/--no-validate", help="First check the listener on held-out speakers.")
    ] = True,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Score how recognisably each TTS engine speaks each emotion, as heard by a listener trained on human
    acted speech (EmoDB): the learned EFP, audio only, speakers normalised. Each engine speaks neutral-content
    English lines under neutral, happy, sad, angry, fear and disgust at intensities 0.5 and 1.0. Writes
    report.json and one confusion PNG per engine and intensity."""
    try:
        from models.tts import ENGINES as IN_PROCESS
        from models.tts.environments import known_environments

        known = [*IN_PROCESS, *(f"{name}-env" for name in known_environments())]
        names = [n.strip() for n in engines.split(",") if n.strip()]
        unknown = sorted(set(names) - set(known))
        if unknown or not names:
            raise InputError(f"unknown engine {unknown or engines!r}; choose from {', '.join(known)}")
        emodb = data / "emodb" if (data / "emodb").is_dir() else data
        if not (emodb / "labels.csv").is_file():
            raise InputError(f"no EmoDB labels.csv under {data}")
        from models.align.engine_timings import EngineTimingAligner
        from models.evaluate.listener import evaluate_speech
        from models.plan.rules import RulePlanner

        report = evaluate_speech(
            emodb,
            out,
            {name: _speech_engine(name) for name in names},
            RulePlanner(),
            EngineTimingAligner(),
            validate=validate,
            log=_log,
        )
    except EmoflowError as exc:
        if debug:
            raise
        _errors.print(
            Text.assemble(("error: ", "red"), str(exc).splitlines()[0]), highlight=False, soft_wrap=True
        )
        raise typer.Exit(code=1) from None
    _console.print(_speech_table(report))
    _console.print(f"report: {out / 'report.json'}")


def _speech_engine(name: str) -> Any:
    """An embedded engine by name, or an installed engine environment by its `-env` option."""
    from models.tts import get_speech_engine
    from models.tts.environments import environment
    from models.tts.remote import RemoteSpeechEngine

    if name.endswith("-env"):
        return RemoteSpeechEngine(environment(name.removesuffix("-env")))
    return get_speech_engine(name)


def _speech_table(report: dict[str, Any]) -> Table:
    table = Table(title="TTS emotion heard by the EmoDB listener (word accuracy, chance 17 %)")
    for column in ("engine", "intensity", "words", "clips", *report["tags"]):
        table.add_column(column)
    held_out = report.get("listener_held_out")
    if held_out:
        recall = {k: v["recall"] for k, v in held_out["per_class"].items()}
        table.add_row(
            "EmoDB speakers held out",
            "acted",
            f"{held_out['word_accuracy']:.1%}",
            f"{held_out['clip_accuracy']:.1%}",
            *(f"{recall[t]:.0%}" if t in recall else "-" for t in report["tags"]),
        )
    for name, result in report["engines"].items():
        for k, row in result["by_intensity"].items():
            table.add_row(
                name,
                k,
                f"{row['word_accuracy']:.1%}",
                f"{row['clip_accuracy']:.1%}",
                *(f"{row['recall'].get(t, 0.0):.0%}" for t in report["tags"]),
            )
    return table
