"""The pseudo-label flow: talking video -> word-labelled clip set in a folder and in the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf

from flows.pseudo_label import main, pseudo_label
from kernel.errors import EngineError, InputError
from models.efp.dataset import read_clip_set
from models.types import Timings, WordTiming
from stores.records import NewArtifact
from tasks.context import open_store
from tests.models.test_pseudo_labels import espeak_speech, make_video

SCRIPT = "Good morning everyone. It is a lovely day for a walk."

pytestmark = pytest.mark.parametrize("emoflow_home", ["sqlite"], indirect=True)  # not about the database


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_transcript_words_get_labels_from_their_frames(
    prefect_api: str, emoflow_home: Path, tmp_path: Path
) -> None:
    speech = espeak_speech(SCRIPT)
    truth = speech.timings.words
    cut = (truth[2].end + truth[3].start) / 2  # the face turns away in the pause between the sentences
    video = make_video(tmp_path / "talk.mp4", speech.duration, lambda t: t < cut, speech=speech)
    out = tmp_path / "sets" / "talk"

    result = pseudo_label([str(video)], str(out), transcripts=[SCRIPT])

    clips = read_clip_set(out)
    assert [c.clip_id for c in clips] == ["talk"] and clips[0].source == "pseudo-label:fer-mini-xception"
    clip = clips[0]
    assert clip.extra["spans"] == "transcript" and clip.extra["frames_without_face"] > 0
    labelled = [w.text for w in clip.words]
    assert labelled == ["Good", "morning", "everyone"]  # the second sentence has no face: dropped
    assert clip.extra["dropped_words"] == [w.text for w in truth[3:]]
    for word, spoken in zip(clip.words, truth, strict=False):
        # DTW against espeak's rendering of the same words lands on espeak's own boundaries
        assert abs(word.start - spoken.start) < 0.08 and abs(word.end - spoken.end) < 0.08, word
        assert word.label == "happy" and word.confidence == 1.0
    assert (out / "talk.wav").is_file()

    store = open_store()
    ref = store.artifact(result.clip_set_sha256, kind="clip-set")
    assert ref.metadata["source"] == "pseudo-label:fer-mini-xception"
    assert store.artifact(ref.metadata["audio"]["talk.wav"], kind="clip-audio").size > 0
    assert store.read_bytes(ref.sha256) == (out / "clips.jsonl").read_bytes()
    assert any(e.action == "clipset.pseudo-label" for e in store.audit_events())
    assert leftovers(out.parent) == ["talk"]  # no temporary folder left behind


def test_emoflow_videos_use_their_runs_word_timings(
    prefect_api: str, emoflow_home: Path, tmp_path: Path
) -> None:
    speech = espeak_speech("Hello there.")
    video = make_video(tmp_path / "video.mp4", speech.duration, lambda t: True, speech=speech)
    timings = Timings(words=[WordTiming(0, "Hello", 0.1, 0.4), WordTiming(1, "there", 0.45, 0.8)])
    timings_json = json.dumps(timings.to_dict()).encode()
    store = open_store()
    wav = tmp_path / "speech.wav"
    sf.write(str(wav), speech.samples, speech.sample_rate)
    portrait = store.put_artifact(NewArtifact("portrait", "portrait", "image/png", data=b"png"))
    job = store.submit_job(
        name="demo", submitter="t", script="Hello there.", description="", portrait=portrait, options={}
    )
    run_id = store.start_run(job, prefect_flow_run_id=None)
    for stage, outputs in (
        ("speak", [NewArtifact("speech", "speech", "audio/wav", path=wav)]),
        ("align", [NewArtifact("word_timings", "word-timings", "application/json", timings_json)]),
        ("publish", [NewArtifact("video", "video", "video/mp4", path=video)]),
    ):
        step = store.begin_step(
            run_id=run_id, stage=stage, engine="e", engine_version="1", params={}, cache_key=stage, inputs={}
        )
        store.commit_step(step, outputs)

    pseudo_label([str(video)], str(tmp_path / "set"))  # no transcript needed

    clip = read_clip_set(tmp_path / "set")[0]
    assert clip.extra["spans"] == "emoflow-run"
    assert [(w.text, w.start, w.end, w.label) for w in clip.words] == [
        ("Hello", 0.1, 0.4, "happy"),
        ("there", 0.45, 0.8, "happy"),
    ]
    assert (tmp_path / "set" / "video.wav").read_bytes() == wav.read_bytes()  # the run's own speech


def test_no_transcript_means_windows(prefect_api: str, emoflow_home: Path, tmp_path: Path) -> None:
    speech = espeak_speech("Hello there.")
    video = make_video(tmp_path / "talk.mp4", speech.duration, lambda t: True, speech=speech)
    pseudo_label([str(video)], str(tmp_path / "set"), window_s=0.25)
    clip = read_clip_set(tmp_path / "set")[0]
    assert clip.extra["spans"] == "windows" and all(w.text == "" for w in clip.words)
    assert len(clip.words) == pytest.approx(speech.duration / 0.25, abs=1)


def test_bad_inputs_write_nothing(prefect_api: str, emoflow_home: Path, tmp_path: Path) -> None:
    speech = espeak_speech("Hello there.")
    no_face = make_video(tmp_path / "away.mp4", speech.duration, lambda t: False, speech=speech)
    silent = make_video(tmp_path / "silent.mp4", 0.4, lambda t: True)
    sets = tmp_path / "sets"
    sets.mkdir()
    with pytest.raises(InputError, match="no face found"):
        pseudo_label([str(no_face)], str(sets / "a"), transcripts=["Hello there."])
    with pytest.raises(InputError, match=r"a transcript was given but silent\.mp4 has no audio track"):
        pseudo_label([str(silent)], str(sets / "b"), transcripts=["Hello there."])
    with pytest.raises(InputError, match="no audio track"):
        pseudo_label([str(silent)], str(sets / "b"))
    with pytest.raises(InputError, match="2 transcripts for 1 videos"):
        pseudo_label([str(no_face)], str(sets / "c"), transcripts=["a", "b"])
    (sets / "full").mkdir()
    (sets / "full" / "x").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        pseudo_label([str(no_face)], str(sets / "full"))
    assert leftovers(sets) == ["full"]

    for video in (no_face, silent):  # the command line: one line and exit code 1
        with pytest.raises(SystemExit) as stopped:
            main([str(video), "--out", str(sets / "d")])
        assert stopped.value.code == 1
    assert leftovers(sets) == ["full"]


def test_a_failure_at_the_end_leaves_no_folder(
    prefect_api: str, emoflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    speech = espeak_speech("Hello there.")
    video = make_video(tmp_path / "talk.mp4", speech.duration, lambda t: True, speech=speech)

    def store_down(*args: object, **kwargs: object) -> None:
        raise EngineError("store unreachable")

    monkeypatch.setattr("tasks.pseudo_label._commit", store_down)
    sets = tmp_path / "sets"
    with pytest.raises(EngineError, match="store unreachable"):
        pseudo_label([str(video)], str(sets / "talk"))
    assert leftovers(sets) == []
