"""Stage 6, publish: MP4 with speech, the delivery speech, curve plot, captions; exported to the job's
output folder.

Loudness normalisation and the speech format belong here, not in speak: they are delivery choices. The
raw `speech` artifact that the aligner, the EFP and the renderer read stays as the engine spoke it, so
changing the loudness target or the format re-runs only this stage, and the word timings (measured on
the raw speech) still hold: normalisation is a gain, it never moves audio in time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect.artifacts import create_markdown_artifact

from kernel.paths import ensure_writable_dir
from kernel.settings import get_settings
from models.publish import Publisher
from models.publish.audio import deliver_speech
from models.publish.captions import webvtt
from models.publish.plot import curve_png
from models.publish.video import mux
from models.types import ProgressFn
from models.vocabulary import load_vocabulary
from stores.records import ArtifactRef, NewArtifact, RunRecord
from tasks.artifacts import load_curve
from tasks.context import open_store
from tasks.stage import run_stage, stage_task
from tasks.stages import PUBLISH, JobInputs, Published


@dataclass(frozen=True)
class Delivery:
    published: Published
    files: dict[str, str]  # published file name -> absolute path


@stage_task(PUBLISH)
def publish(
    run_id: str,
    job: JobInputs,
    frames: ArtifactRef,
    speech: ArtifactRef,
    plan: ArtifactRef,
    curve: ArtifactRef,
) -> Delivery:
    store = open_store()
    output_dir = Path(job.options.output_dir)
    ensure_writable_dir(output_dir)  # fail before publishing anything
    publisher = Publisher()

    def compute(workdir: Path, _progress: ProgressFn) -> list[NewArtifact]:
        loaded_curve = load_curve(store, curve)
        delivered = deliver_speech(
            store.blob_path(speech.sha256),
            workdir,
            target_lufs=job.options.speech_loudness,
            speech_format=job.options.speech_format,
        )
        video = workdir / "video.mp4"
        mux(store.blob_path(frames.sha256), delivered.wav, video)  # AAC from the WAV: one lossy step
        plot = curve_png(loaded_curve, load_vocabulary(), title=f"{job.name}: word-level emotion curve")
        loudness = delivered.loudness.to_metadata()
        speech_metadata = {
            "seconds": delivered.seconds,
            "sample_rate": delivered.sample_rate,
            "format": job.options.speech_format,
            "loudness": loudness,
        }
        video_metadata = {
            "seconds": speech.metadata["seconds"],
            "loudness_lufs": loudness["output_integrated_lufs"],
        }
        return [
            NewArtifact("video", "video", "video/mp4", path=video, metadata=video_metadata),
            NewArtifact(
                "delivery_speech",
                "delivery-speech",
                delivered.media_type,
                path=delivered.path,
                metadata=speech_metadata,
            ),
            NewArtifact("curve_plot", "curve-plot", "image/png", data=plot),
            NewArtifact("captions", "captions", "text/vtt", data=webvtt(loaded_curve).encode("utf-8")),
        ]

    published = run_stage(
        store,
        PUBLISH,
        run_id=run_id,
        engine=publisher,
        params=PUBLISH.parameters(job.options, title=job.name),  # the curve plot's title shows the job name
        inputs={"frames": frames, "speech": speech, "curve": curve},
        compute=compute,
    )
    exports = {
        "video.mp4": published.video,
        f"speech.{job.options.speech_format}": published.delivery_speech,
        "plan.json": plan,
        "curve.json": curve,
        "curve.png": published.curve_plot,
        "captions.vtt": published.captions,
    }
    files = {
        name: str(store.export(ref.sha256, output_dir / name, run_id=run_id)) for name, ref in exports.items()
    }
    record = store.run(run_id)
    create_markdown_artifact(
        markdown=summary_markdown(record, files),
        key=f"narration-{run_id[:8]}",
        description=f"emoflow run {run_id} of job {job.name}",
    )
    return Delivery(published=published, files=files)


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
