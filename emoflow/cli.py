"""The `emoflow` command: narrate jobs and inspect what the store recorded."""

from __future__ import annotations

import inspect
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from emoflow.commands.engines import engines_app
from emoflow.commands.evaluate import evaluate_app
from emoflow.commands.server import server_app
from emoflow.commands.store import store_app
from emoflow.commands.web import register as register_web_commands
from emoflow.commands.weights import weights_app
from emoflow.console_logs import quiet_input_errors
from emoflow.prefect_server import use_shared_server
from kernel.errors import EmoflowError, InputError
from kernel.runtime import configure_environment
from kernel.settings import (
    AlignerName,
    EfpEngineName,
    PlannerName,
    RendererName,
    SpeechFormat,
    TaskRunnerName,
    TtsEngineName,
    get_settings,
)

app = typer.Typer(
    name="emoflow",
    help="Script + emotion description + portrait -> emotional talking-face video.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and Prefect's logs.")] = False,
) -> None:
    _state["debug"] = debug
    if not debug:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    configure_environment()


def _fail(exc: BaseException) -> None:
    if _state["debug"]:
        raise exc
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    # messages quote user text such as "[angry 0.8]", which Rich must not read as markup
    errors.print(Text.assemble(("error: ", "red"), message), highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


def _store() -> Any:
    from stores.store import ArtifactStore

    return ArtifactStore.from_settings(get_settings())


def _choices(names: Any) -> str:
    return " or ".join(get_args(names))


@app.command()
def narrate(
    job_file: Annotated[Path, typer.Argument(help="YAML job file (script, description, portrait, ...).")],
    script: Annotated[str | None, typer.Option(help="Script text, overriding the job file.")] = None,
    script_file: Annotated[
        Path | None, typer.Option("--script-file", help="UTF-8 text file with the script.")
    ] = None,
    description: Annotated[str | None, typer.Option(help="Emotion description.")] = None,
    portrait: Annotated[str | None, typer.Option(help="Portrait image path or skimage:astronaut.")] = None,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-o", help="Where files are published.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Job name.")] = None,
    submitter: Annotated[str | None, typer.Option(help="Who submits (default: your user name).")] = None,
    planner: Annotated[str | None, typer.Option(help=_choices(PlannerName))] = None,
    planner_model: Annotated[
        str | None, typer.Option("--planner-model", help="Instruct LM folder for the llm planner.")
    ] = None,
    tts_engine: Annotated[str | None, typer.Option(help=_choices(TtsEngineName))] = None,
    aligner: Annotated[str | None, typer.Option(help=_choices(AlignerName))] = None,
    efp_engine: Annotated[str | None, typer.Option(help=_choices(EfpEngineName))] = None,
    efp_model: Annotated[
        str | None, typer.Option(help="Learned EFP model: a name or sha256 in the store, or a file.")
    ] = None,
    renderer: Annotated[str | None, typer.Option(help=_choices(RendererName))] = None,
    fps: Annotated[int | None, typer.Option(help="Frames per second.")] = None,
    size: Annotated[int | None, typer.Option(help="Output size in pixels (square).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for blinks and head motion.")] = None,
    head_motion: Annotated[
        float | None, typer.Option("--head-motion", help="Head motion scale, 0 (still) to 3.")
    ] = None,
    face_index: Annotated[
        int | None, typer.Option("--face-index", help="Which face to animate, largest first.")
    ] = None,
    frame: Annotated[
        str | None,
        typer.Option(
            help="What the video shows: crop (the size x size face crop, default), portrait (the whole "
            "portrait at its own resolution) or WIDTHxHEIGHT such as 1920x1080 (even sides)."
        ),
    ] = None,
    allow_non_human: Annotated[
        bool | None,
        typer.Option(
            "--allow-non-human",
            help="Animate a face that does not look human (an animal, a mask) instead of refusing it.",
        ),
    ] = None,
    speech_loudness: Annotated[
        float | None,
        typer.Option(
            "--speech-loudness",
            help="Loudness of the published speech and video in LUFS, -40 to -9 (default -16; true peak "
            "stays at or under -1 dBTP).",
        ),
    ] = None,
    speech_format: Annotated[
        str | None, typer.Option("--speech-format", help=f"Published speech file: {_choices(SpeechFormat)}.")
    ] = None,
    weights: Annotated[
        str | None, typer.Option(help="Diffusion renderer weights (directory or hub id).")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Diffusion denoising steps.")] = None,
    guidance: Annotated[float | None, typer.Option(help="Diffusion classifier-free guidance.")] = None,
    device: Annotated[str | None, typer.Option(help="torch device for neural engines (cpu, cuda).")] = None,
    no_fast_path: Annotated[
        bool,
        typer.Option(
            "--no-fast-path",
            help="Run the flow even when every step is in the store (default: such a job is narrated "
            "from the store alone; EMOFLOW_FAST_PATH=false does the same).",
        ),
    ] = False,
) -> None:
    """Narrate one job end to end; finished steps already in the store are reused."""
    from emoflow.console import StageProgress
    from kernel.jobs import load_job_file

    fields = dict(locals())
    overrides = {key: fields[key] for key in NARRATE_FIELDS}
    for key in ("output_dir", "script_file"):  # relative to where the command runs, not to the job file
        if overrides[key] is not None:
            overrides[key] = str(Path(overrides[key]).resolve())
    if weights and Path(weights).exists():
        overrides["weights"] = str(Path(weights).resolve())
    try:
        spec = load_job_file(job_file, overrides)
        use_shared_server()  # before Prefect is imported: its settings are read once
        # the fast path's modules import neither Prefect nor an engine; flows.narrate imports both
        from flows.fast_path import narrate_from_store, open_store, submit_job
        from flows.prefect_api import PrefectRecorder
        from kernel.progress import listening

        seconds = spec.speech_seconds_estimate()
        if seconds >= 60:
            console.print(f"script: {len(spec.script.split())} words, about {seconds / 60:.0f} min of speech")
        job_id = submit_job(spec, get_settings(), open_store())
        console.print(f"job [bold]{spec.name}[/bold] submitted as {job_id}")
        with StageProgress(console) as display, listening(display):
            result = None
            if get_settings().fast_path and not no_fast_path:
                result, why = narrate_from_store(job_id, PrefectRecorder.from_environment())
                if result is None and _state["debug"]:
                    errors.print(Text(f"fast path declined: {why}"), highlight=False)
            resolved = result is not None
            if result is None:  # something to compute, or a doubt: the flow decides
                from flows.narrate import narrate_here

                if not _state["debug"]:
                    quiet_input_errors()  # the one-line error below says it; Prefect's run logs keep it
                result = narrate_here(job_id)
    except (EmoflowError, OSError) as exc:
        _fail(exc)
        return
    record = open_store().run(result.run_id)
    report = record.plan_report()
    # the readings only when there is something to check: a tag-only job gets no empty section
    if report and (
        report["readings"]
        or report["warnings"]
        or (report["readings"] is not None and record.job.description.strip())
    ):
        _print_plan(report, record.job.description)
    computed = sum(1 for step in record.steps if not step.cache_hit)
    console.print(f"run [bold]{result.run_id}[/bold]: {computed} of {len(record.steps)} steps computed")
    if resolved:
        console.print(RESOLVED_LINE)
    console.print(f"video: [bold]{result.published['video.mp4']}[/bold]")


RESOLVED_LINE = "resolved from the store: every step was already done, so the flow did not run"
# the job fields `narrate` takes as options: all of JobSpec's (tests/test_job_fields.py checks it)
NARRATE_FIELDS = tuple(
    name for name in inspect.signature(narrate).parameters if name not in ("job_file", "no_fast_path")
)


@app.command()
def submit(
    job_file: Annotated[Path, typer.Argument(help="YAML job file.")],
) -> None:
    """Queue a job for the next `emoflow batch --queue` drain (or the scheduled deployment)."""
    from kernel.jobs import load_job_file

    try:
        spec = load_job_file(job_file)
        from flows.narrate import open_store, submit_job

        job_id = submit_job(spec, get_settings(), open_store(), queued=True)
    except (EmoflowError, OSError) as exc:
        _fail(exc)
        return
    console.print(f"job [bold]{spec.name}[/bold] queued as {job_id}")


@app.command()
def batch(
    manifest: Annotated[
        Path | None, typer.Argument(help="CSV or YAML manifest, or a folder of job files.")
    ] = None,
    queue: Annotated[bool, typer.Option("--queue", help="Drain the store's pending jobs instead.")] = False,
    workers: Annotated[int | None, typer.Option(min=1, max=64, help="Jobs narrated at once.")] = None,
    runner: Annotated[str | None, typer.Option(help="threads (default) or dask.")] = None,
    limit: Annotated[int | None, typer.Option(help="With --queue: claim at most this many jobs.")] = None,
    no_fast_path: Annotated[
        bool,
        typer.Option(
            "--no-fast-path", help="Run the flow for every row, even when all its steps are stored."
        ),
    ] = False,
) -> None:
    """Narrate many jobs; one failure never stops the others. Exit 1 if any job failed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if (manifest is None) == (not queue):
        _fail(EmoflowError("give a MANIFEST or --queue, not both or neither"))
        return
    try:
        use_shared_server()
        from kernel.manifest import load_manifest
        from kernel.progress import listening

        rows = load_manifest(manifest) if manifest is not None else None
        seconds = sum(row.spec.speech_seconds_estimate() for row in rows or [] if row.spec is not None)
        if seconds >= 60:
            console.print(f"{len(rows or [])} jobs, about {seconds / 60:.0f} min of speech in all")
        columns = (TextColumn("jobs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task("jobs", total=len(rows) if rows is not None else None)
            watcher = _JobWatcher(lambda: progress.advance(bar))
            with listening(watcher):
                settings = get_settings()
                count = workers or settings.workers
                done: dict[int, Any] = {}
                if rows is not None and settings.fast_path and not no_fast_path:
                    kind = runner or settings.task_runner
                    if kind not in get_args(TaskRunnerName):  # refused before any row, as the flow would
                        raise InputError(f"unknown task runner {kind!r}; choose threads or dask")
                    outcomes = _batch_from_store(rows, done, count, kind)
                else:
                    from flows.batch import drain_queue, make_task_runner, run_manifest

                    task_runner = make_task_runner(runner or settings.task_runner, count)
                    if rows is not None:
                        outcomes = run_manifest(rows, workers=count, task_runner=task_runner)
                    else:
                        outcomes = drain_queue(limit, workers=count, task_runner=task_runner)
    except (EmoflowError, OSError) as exc:
        _fail(exc)
        return
    table = Table("row", "where", "status", "run", "computed", "video / error")
    for o in outcomes:
        status = {"succeeded": "[green]succeeded", "failed": "[red]failed", "rejected": "[red]rejected"}[
            o.status
        ]
        detail = Text(o.video or o.error or "", style="red" if o.error else "")
        computed = "" if o.computed_steps is None else str(o.computed_steps)
        table.add_row(o.row_id, o.where, status, (o.run_id or "")[:8], computed, detail)
    console.print(table)
    succeeded = sum(o.status == "succeeded" for o in outcomes)
    console.print(f"{succeeded} of {len(outcomes)} jobs narrated")
    if done:
        console.print(f"{len(done)} of them resolved from the store: every step was already done")
    if succeeded != len(outcomes):
        raise typer.Exit(code=1)


def _batch_from_store(rows: list[Any], done: dict[int, Any], workers: int, runner: str) -> list[Any]:
    """Rows with nothing to compute are narrated from the store (fills `done`); the flow takes the rest."""
    from flows.fast_path import narrate_manifest_from_store
    from flows.prefect_api import PrefectRecorder

    recorder = PrefectRecorder.from_environment()
    declined: dict[int, str] = {}
    try:
        finished, pending = narrate_manifest_from_store(rows, recorder, declined)
    finally:
        if recorder is not None:
            recorder.close()
    if _state["debug"]:
        for position, why in sorted(declined.items()):
            errors.print(Text(f"{rows[position].where}: fast path declined: {why}"), highlight=False)
    done |= {p: o for p, o in finished.items() if o.status == "succeeded" and o.computed_steps == 0}
    if pending:
        from flows.batch import make_task_runner, run_manifest

        rest = sorted(pending)
        narrated = run_manifest(
            [rows[p] for p in rest],
            workers=workers,
            task_runner=make_task_runner(runner, workers),
            submitted={i: pending[p] for i, p in enumerate(rest)},
        )
        finished |= dict(zip(rest, narrated, strict=True))
    return [finished[p] for p in range(len(rows))]


@app.command()
def schedule(
    cron: Annotated[str, typer.Option(help="When to drain the queue (cron, UTC).")] = "0 2 * * *",
    name: Annotated[str, typer.Option(help="Deployment name.")] = "nightly-drain",
    limit: Annotated[int | None, typer.Option(help="Claim at most this many jobs per run.")] = None,
) -> None:
    """Serve the queue-draining deployment on a cron schedule until interrupted (needs PREFECT_API_URL)."""
    if not os.environ.get("PREFECT_API_URL"):
        _fail(
            EmoflowError(
                "schedules need a running Prefect server: start `prefect server start`, then "
                "set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)"
            )
        )
        return
    from flows.schedule import serve_drain

    console.print(f"serving deployment drain-queue/{name} on {cron!r}; Ctrl-C stops")
    serve_drain(name=name, cron=cron, limit=limit)


class _JobWatcher:
    """Advances the batch progress bar as jobs finish (a kernel.progress listener)."""

    def __init__(self, advance: Any) -> None:
        self._advance = advance

    def job_finished(self, _outcome: object) -> None:
        self._advance()


def _step_rows(record: Any) -> list[dict[str, Any]]:
    return [
        {
            "stage": s.stage,
            "status": s.status,
            "cache_hit": s.cache_hit,
            "engine": s.engine,
            "engine_version": s.engine_version,
            # what the cache key covers besides name and version: tables, model files, source
            "engine_digests": dict(s.engine_digests),
            "cache_key": s.cache_key,
            "seconds": s.seconds,
            "attempts": s.attempts,
            "error": s.error,
            "inputs": {n: a.sha256 for n, a in s.inputs.items()},
            "artifacts": [
                {
                    "name": n,
                    "kind": a.kind,
                    "media_type": a.media_type,
                    "sha256": a.sha256,
                    "uri": a.uri,
                    "metadata": dict(a.metadata),
                }
                for n, a in s.outputs.items()
            ],
        }
        for s in record.steps
    ]


@app.command()
def runs(
    limit: Annotated[int, typer.Option(help="How many of the newest runs.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List runs, newest first."""
    try:
        records = _store().list_runs(limit)
    except EmoflowError as exc:
        _fail(exc)
        return
    rows = [
        {
            "run_id": r.id,
            "job": r.job.name,
            "submitter": r.job.submitter,
            "status": r.status,
            "started_at": r.started_at.isoformat(),
            "seconds": (r.finished_at - r.started_at).total_seconds() if r.finished_at else None,
            "computed": sum(1 for s in r.steps if not s.cache_hit),
            "cached": sum(1 for s in r.steps if s.cache_hit),
        }
        for r in records
    ]
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    table = Table("run", "job", "submitter", "status", "started", "seconds", "computed", "cached")
    for row in rows:
        seconds = f"{row['seconds']:.1f}" if row["seconds"] is not None else ""
        table.add_row(
            row["run_id"][:8],
            row["job"],
            row["submitter"],
            row["status"],
            row["started_at"][:19],
            seconds,
            str(row["computed"]),
            str(row["cached"]),
        )
    console.print(table)


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix of it.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """A run's steps (engines, versions, cache keys, timings, artifacts), then how the brief was read."""
    try:
        record = _store().run(run_id)
    except EmoflowError as exc:
        _fail(exc)
        return
    steps = _step_rows(record)
    plan = record.plan_report()
    if as_json:
        document = {
            "run_id": record.id,
            "job_id": record.job.id,
            "job": record.job.name,
            "status": record.status,
            "error": record.error,
            "prefect_flow_run_id": record.prefect_flow_run_id,
            "options": record.job.options,
            "steps": steps,
            "plan": plan,
        }
        print(json.dumps(document, indent=1))
        return
    console.print(f"run [bold]{record.id}[/bold] of job [bold]{record.job.name}[/bold]: {record.status}")
    if record.error:
        console.print(Text(record.error, style="red"))
    table = Table("stage", "status", "engine", "cache key", "covers", "seconds", "artifacts")
    for step in steps:
        artifacts = "\n".join(
            f"{a['name']} {a['sha256'][:12]} {a['media_type']}{_loudness_line(a['metadata'])}"
            for a in step["artifacts"]
        )
        covers = "\n".join(f"{name} {digest[:8]}" for name, digest in step["engine_digests"].items())
        status = "cached" if step["cache_hit"] else step["status"]
        seconds = f"{step['seconds']:.2f}" if step["seconds"] is not None else ""
        engine = f"{step['engine']}@{step['engine_version']}"
        table.add_row(step["stage"], status, engine, step["cache_key"][:12], covers, seconds, artifacts)
    console.print(table)
    if plan is not None:
        _print_plan(plan, record.job.description)


def _loudness_line(metadata: dict[str, Any]) -> str:
    """The delivery speech's measured loudness, as a second line under its artifact ("" for others)."""
    loudness = metadata.get("loudness")
    if not isinstance(loudness, dict):
        return ""

    def db(key: str, unit: str) -> str:
        value = loudness.get(key)
        return f"{value:.1f} {unit}" if isinstance(value, int | float) else "n/a"

    return (
        f"\n  {db('input_integrated_lufs', 'LUFS')} -> {db('output_integrated_lufs', 'LUFS')} "
        f"(target {db('target_lufs', 'LUFS')}), true peak {db('output_true_peak_db', 'dBTP')}, "
        f"LRA {db('output_range_lu', 'LU')}, {loudness.get('normalization')}"
    )


def _print_plan(report: dict[str, Any], description: str) -> None:
    """How the brief was read: a row per reading, then every plan warning in yellow.
    All of it is user text or quotes it, so it goes in as Text, never as Rich markup."""
    console.print(Text("How the brief was read", style="bold"))
    readings = report["readings"]
    if readings:
        table = Table("phrase", "read as", "how", "where", "words")
        for r in readings:
            read_as = f"{r.get('label', '')} {float(r.get('intensity') or 0.0):.2f}"
            table.add_row(
                Text(str(r.get("phrase", ""))),
                Text(f"→ {read_as}"),
                Text(str(r.get("how", ""))),
                Text(str(r.get("where", ""))),
                Text(str(r.get("words", ""))),
            )
        console.print(table)
    elif readings is None:  # planned before readings were recorded: its warnings are all there is
        if not report["warnings"]:
            console.print(
                Text("This run was planned before readings were recorded; its plan has no warnings.")
            )
    elif description.strip():
        console.print(
            Text(
                "No part of the description was read as an emotion: "
                "only the script's inline tags, if any, shape the plan.",
                style="yellow",
            )
        )
    else:
        console.print(Text("No description was given: only the script's inline tags shape the plan."))
    for warning in report["warnings"]:
        # one line each however long: easy to copy, grep or quote in an issue
        console.print(Text.assemble(("plan warning: ", "bold yellow"), (warning, "yellow")), soft_wrap=True)


@app.command()
def export(
    sha256: Annotated[str, typer.Argument(help="Artifact sha256 or a unique prefix (6+ characters).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")],
) -> None:
    """Copy an artifact out of the store, verified against its hash."""
    try:
        store = _store()
        matches = {ref.sha256 for ref in store.find_artifacts(sha256)}
        if len(matches) != 1:
            raise EmoflowError(f"{len(matches)} artifacts match {sha256!r}; give a unique sha256 prefix")
        path = store.export(matches.pop(), output, actor=_actor())
    except (EmoflowError, OSError) as exc:
        _fail(exc)
        return
    console.print(f"wrote {path}")


@app.command()
def audit(
    run: Annotated[str | None, typer.Option("--run", help="Only this run's events.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The append-only audit trail."""
    try:
        events = _store().audit_events(run_id=run)
    except EmoflowError as exc:
        _fail(exc)
        return
    if as_json:
        print(json.dumps([asdict(e) | {"at": e.at.isoformat()} for e in events], indent=1))
        return
    table = Table("at", "actor", "action", "run", "details")
    for event in events:
        details = ", ".join(f"{k}={str(v)[:40]}" for k, v in event.details.items())
        table.add_row(event.at.isoformat()[:19], event.actor, event.action, (event.run_id or "")[:8], details)
    console.print(table)


def _actor() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


register_web_commands(app)
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(store_app, name="store")
app.add_typer(weights_app, name="weights")
app.add_typer(server_app, name="server")
app.add_typer(engines_app, name="engines")

if __name__ == "__main__":
    sys.exit(app())
