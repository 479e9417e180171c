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
from models.publish import Publisher
from models.publish.audio import deliver_speech
from models.publish.captions import webvtt
from models.publish.plot import curve_png
from models.publish.video import mux
from models.types import ProgressFn
from models.vocabulary import load_vocabulary
from stores.records import ArtifactRef, NewArtifact
from tasks.artifacts import load_curve
from tasks.context import open_store
from tasks.stage import run_stage, stage_task
from tasks.stages import PUBLISH, JobInputs, Published, publish_parameters, published_files
from tasks.summary import export_files, run_summary


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
        params=publish_parameters(job),
        inputs={"frames": frames, "speech": speech, "curve": curve},
        compute=compute,
        options=job.options,
    )
    files = export_files(store, run_id, output_dir, published_files(job.options, published, plan, curve))
    summary = run_summary(store.run(run_id), files)
    create_markdown_artifact(markdown=summary.markdown, key=summary.key, description=summary.description)
    return Delivery(published=published, files=files)
