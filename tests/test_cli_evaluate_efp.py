"""`emoflow evaluate efp`: CK+, EmoDB, description and MEAD evaluations on tiny folders made here."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import soundfile as sf
from skimage import data
from typer.testing import CliRunner

from emoflow.cli import app
from models.evaluate.classification import save_confusion_png, score_labels
from models.vision.judge import FaceEmotionJudge
from tests.models.test_pseudo_labels import espeak_speech, make_video

runner = CliRunner()

CASES = """\
- id: plain-furious
  script: "I can't believe you did this."
  description: furious
  expect: angry*6
- id: plain-content
  script: "The package arrived."
  description: content
  expect: happy*3
"""


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def make_ckplus(root: Path) -> None:
    """48x48 grayscale crops of the smiling astronaut, as CK+48 stores its faces."""
    astronaut = data.astronaut()
    x, y, w, h = FaceEmotionJudge.shared().face_box(astronaut)
    face = cv2.cvtColor(astronaut[y : y + h, x : x + w], cv2.COLOR_RGB2GRAY)
    rows = []
    for i, (emotion, shift) in enumerate([("happy", 0), ("happy", 3), ("surprise", 0), ("contempt", 2)]):
        crop = cv2.resize(np.roll(face, shift, axis=1), (48, 48), interpolation=cv2.INTER_AREA)
        (root / emotion).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / emotion / f"S00{i}_001.png"), crop)
        rows.append({"path": f"{emotion}/S00{i}_001.png", "emotion": emotion, "subject": f"S00{i}"})
    write_csv(root / "labels.csv", rows)


def make_emodb(root: Path) -> None:
    (root / "wav").mkdir(parents=True)
    rows = []
    for speaker, emotion in (("03", "angry"), ("08", "sad")):
        speech = espeak_speech("Der Lappen liegt auf dem Eisschrank.")
        name = f"wav/{speaker}a01{emotion[0].upper()}a.wav"
        sf.write(str(root / name), speech.samples, speech.sample_rate)
        rows.append({"path": name, "emotion": emotion, "speaker": speaker, "text_id": "a01"})
    write_csv(root / "labels.csv", rows)


@pytest.fixture
def emodb_stand_in(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The learned EFP's leave-one-speaker-out training takes minutes: a majority-class stand-in reads
    the same folder and answers in the same shape, so the command's wiring is what is tested."""
    from models.efp.emodb import read_labels

    calls: list[dict[str, Any]] = []

    def evaluate_emodb(data_dir: Path, out_dir: Path, features: str = "embedded", log: Any = print) -> dict:
        calls.append({"data_dir": data_dir, "out_dir": out_dir, "features": features})
        truth = [row.emotion for row in read_labels(data_dir)]
        report = score_labels(truth, ["sad"] * len(truth))
        out_dir.mkdir(parents=True, exist_ok=True)
        save_confusion_png(report, out_dir / "confusion_clips.png", "clips")
        save_confusion_png(report, out_dir / "confusion_words.png", "words")
        log("stand-in EmoDB evaluation")
        return {"word_accuracy": report.accuracy, "word_macro_f1": report.macro_f1, "words": report.to_dict()}

    monkeypatch.setattr("models.evaluate.efp_emodb.evaluate_emodb", evaluate_emodb)
    return calls


def test_every_evaluation_writes_its_scores_and_confusion(
    tmp_path: Path, emodb_stand_in: list[dict[str, Any]]
) -> None:
    shared = tmp_path / "data"
    make_ckplus(shared / "ckplus48")
    make_emodb(shared / "emodb")
    mead = shared / "mead"
    mead.mkdir()
    make_video(mead / "W000_front_happy_level3_001.mp4", 0.6, lambda t: True)
    make_video(mead / "W000_front_contempt_level3_001.mp4", 0.2, lambda t: True)
    write_csv(
        mead / "labels.csv",
        [
            {"path": "W000_front_happy_level3_001.mp4", "speaker": "W000", "emotion": "happy"},
            {"path": "W000_front_contempt_level3_001.mp4", "speaker": "W000", "emotion": "contempt"},
        ],
    )
    cases = tmp_path / "cases.yaml"
    cases.write_text(CASES, encoding="utf-8")
    out = tmp_path / "out"

    result = runner.invoke(
        app, ["evaluate", "efp", "--data", str(shared), "--out", str(out), "--cases", str(cases)]
    )

    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())["evaluations"]
    assert {k: v["status"] for k, v in report.items()} == {
        "emodb": "ok",
        "ckplus": "ok",
        "descriptions": "ok",
        "mead": "ok",
    }
    ck = report["ckplus"]
    assert ck["n"] == 3  # contempt has no judge class: not scored ...
    assert ck["summary"]["contempt_judged_as"] and sum(ck["summary"]["contempt_judged_as"].values()) == 1
    assert ck["report"]["per_class"]["happy"]["recall"] == 1.0  # ... the smiling crops are happy
    assert emodb_stand_in == [
        {"data_dir": shared / "emodb", "out_dir": out / "emodb", "features": "embedded"}
    ]
    assert report["emodb"]["accuracy"] == 0.5 and report["emodb"]["n"] == 2
    assert report["emodb"]["confusion_png"].endswith("confusion_words.png")
    assert report["descriptions"]["n"] == 9 and 0.0 <= report["descriptions"]["accuracy"] <= 1.0
    assert report["mead"]["frame_agreement"] == {"happy": 1.0} and report["mead"]["n"] == 15
    assert report["mead"]["window_agreement"] == {"happy": 1.0}  # 0.6 s: two windows, both happy
    for name in ("ckplus", "descriptions", "mead"):
        assert (
            Path(report[name]["confusion_png"]).is_file()
            and Path(report[name]["confusion_png"]).parent == out
        )
    for name in ("ckplus", "emodb", "descriptions", "mead"):
        assert name in result.stdout


def test_missing_folders_are_skipped_and_reported(tmp_path: Path) -> None:
    shared = tmp_path / "data"
    make_ckplus(shared / "ckplus48")
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["evaluate", "efp", "--data", str(shared), "--out", str(out), "--only", "ckplus,emodb,mead"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())["evaluations"]
    assert report["ckplus"]["status"] == "ok"
    assert report["emodb"] == {"status": "skipped", "reason": f"{shared / 'emodb'} has no labels.csv"}
    assert report["mead"]["status"] == "skipped" and "descriptions" not in report
    assert "skipped" in result.stdout


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (["--only", "emodb,mead"], "nothing could be evaluated"),
        (["--only", "speech"], "unknown evaluation ['speech']"),
    ],
)
def test_nothing_valid_is_a_one_line_error(tmp_path: Path, arguments: list[str], fragment: str) -> None:
    (tmp_path / "data").mkdir()
    result = runner.invoke(
        app, ["evaluate", "efp", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "o"), *arguments]
    )
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert message.startswith("error:") and fragment in message and len(message.splitlines()) == 1


def test_a_missing_data_root_is_a_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "efp", "--data", str(tmp_path / "absent")])
    assert result.exit_code == 1 and "data folder not found" in result.stderr
    assert not (tmp_path / "absent").exists()


def test_an_unusable_output_folder_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "blocker").write_text("a file where a folder should be", encoding="utf-8")
    out = tmp_path / "blocker" / "efp"
    result = runner.invoke(app, ["evaluate", "efp", "--data", str(tmp_path / "data"), "--out", str(out)])
    assert result.exit_code == 1 and "cannot create the output folder" in result.stderr
