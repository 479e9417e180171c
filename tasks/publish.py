"""Stage 6, publish: MP4 with speech, curve plot, captions; exported to the job's output folder."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from kernel.paths import ensure_writable_dir
from kernel.settings import get_settings
from models.publish import PUBLISHER_NAME, PUBLISHER_VERSION
from models.publish.captions import webvtt
from models.publish.plot import curve_png
from models.publish.video import mux
from models.types import ProgressFn
from models.vocabulary import load_vocabulary
from stores.records import ArtifactRef, NewArtifact, RunRecord
from stores.store import ArtifactStore
from tasks.artifacts import load_curve
from tasks.context import open_store
from tasks.stage import retry_transient, run_stage

# published file name -> (stage output it comes from, its name there)
EXPORTS = {
    "video.mp4": ("publish", "video"),
    "speech.wav": ("speak", "speech"),
    "plan.json": ("plan", "plan"),
    "curve.json": ("feel", "curve"),
    "curve.png": ("publish", "curve_plot"),
    "captions.vtt": ("publish", "captions"),
}


@task(
    name="publish",
    retries=get_settings().task_retries,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def publish(run_id: str, frames: ArtifactRef, speech: ArtifactRef, curve: ArtifactRef) -> dict[str, str]:
    """Returns published file name -> absolute path."""
    store = open_store()
    job = store.run(run_id).job
    output_dir = Path(job.options["output_dir"])
    ensure_writable_dir(output_dir)  # fail before publishing anything

    def compute(workdir: Path, _progress: ProgressFn) -> list[NewArtifact]:
        loaded_curve = load_curve(store, curve)
        video = workdir / "video.mp4"
        mux(store.blob_path(frames.sha256), store.blob_path(speech.sha256), video)
        plot = curve_png(loaded_curve, load_vocabulary(), title=f"{job.name}: word-level emotion curve")
        return [
            NewArtifact(
                "video", "video", "video/mp4", path=video, metadata={"seconds": speech.metadata["seconds"]}
            ),
            NewArtifact("curve_plot", "curve-plot", "image/png", data=plot),
            NewArtifact("captions", "captions", "text/vtt", data=webvtt(loaded_curve).encode("utf-8")),
        ]

    run_stage(
        store,
        run_id=run_id,
        stage="publish",
        engine=PUBLISHER_NAME,
        engine_version=PUBLISHER_VERSION,
        params={"title": job.name},  # the curve plot's title shows the job name
        inputs={"frames": frames, "speech": speech, "curve": curve},
        compute=compute,
    )
    record = store.run(run_id)
    published = _export(store, record, output_dir)
    create_markdown_artifact(
        markdown=summary_markdown(record, published),
        key=f"narration-{run_id[:8]}",
        description=f"emoflow run {run_id} of job {job.name}",
    )
    return published


def _export(store: ArtifactStore, record: RunRecord, output_dir: Path) -> dict[str, str]:
    outputs = {step.stage: step.outputs for step in record.steps}
    published = {}
    for filename, (stage, name) in EXPORTS.items():
        ref = outputs[stage][name]
        published[filename] = str(store.export(ref.sha256, output_dir / filename, run_id=record.id))
    return published


def summary_markdown(record: RunRecord, published: dict[str, str]) -> str:
    lines = [
        f"# emoflow run `{record.id}`",
        "",
        f"Job **{record.job.name}** submitted by {record.job.submitter}. "
        f"[Open it in the inspector]({get_settings().inspector_url.rstrip('/')}/ui/runs/{record.id}).",
        "",
        "| stage | engine | version | cache hit | seconds | outputs (sha256) |",
        "|---|---|---|---|---|---|",
    ]
    for step in record.steps:
        outputs = ", ".join(f"{name} `{ref.sha256[:12]}`" for name, ref in step.outputs.items())
        seconds = f"{step.seconds:.2f}" if step.seconds is not None else ""
        lines.append(
            f"| {step.stage} | {step.engine} | {step.engine_version} | {'yes' if step.cache_hit else 'no'} "
            f"| {seconds} | {outputs} |"
        )
    lines += ["", "## Published files", ""]
    lines += [f"- `{name}`: {path}" for name, path in published.items()]
    return "\n".join(lines)
