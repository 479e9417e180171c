from pathlib import Path

import pytest

from kernel.errors import InputError
from kernel.jobs import load_job_file, parse_job
from kernel.settings import Settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_relative_paths_resolve_against_the_job_file(tmp_path: Path) -> None:
    (tmp_path / "lines.txt").write_text("Hello there.", encoding="utf-8")
    spec = load_job_file(write(tmp_path, "script_file: lines.txt\nportrait: face.jpg\noutput_dir: out\n"))
    assert spec.script == "Hello there."
    assert spec.portrait == str(tmp_path / "face.jpg")
    assert spec.output_dir == tmp_path / "out"


def test_builtin_portrait_is_left_alone(tmp_path: Path) -> None:
    spec = load_job_file(write(tmp_path, "script: Hi.\nportrait: skimage:astronaut\n"))
    assert spec.portrait == "skimage:astronaut"


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "script: Hi.\nportrait: skimage:astronaut\nfps: 25\n")
    spec = load_job_file(path, {"script": "Bye.", "fps": 12, "seed": None})
    assert (spec.script, spec.fps) == ("Bye.", 12)


def test_options_fill_gaps_from_settings(tmp_path: Path) -> None:
    spec = parse_job({"script": "Hi.", "portrait": "skimage:astronaut", "tts_engine": "espeak"}, tmp_path)
    options = spec.options(Settings(output_dir=tmp_path / "o", fps=30))
    assert options.tts_engine == "espeak" and options.renderer == "preview"
    assert options.fps == 30 and options.output_dir == str((tmp_path / "o" / "narration").resolve())


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("script: Hi.\n", "portrait: Field required"),
        ("script: Hi.\nportrait: a.png\nfps: 0\n", "fps"),
        ("script: Hi.\nportrait: a.png\ncolour: red\n", "colour: Extra inputs are not permitted"),
        ("script: Hi.\nportrait: a.png\nname: ../escape\n", "name"),
        ("script: Hi.\nscript_file: s.txt\nportrait: a.png\n", "either script or script_file"),
        ("- just\n- a list\n", "must be a mapping"),
        ("script: [unclosed\n", "not valid YAML"),
        ("script_file: nowhere.txt\nportrait: a.png\n", "cannot read script_file"),
    ],
)
def test_bad_job_files_name_the_problem(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment.replace("[", r"\[")):
        load_job_file(write(tmp_path, text))


def test_missing_job_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_job_file(tmp_path / "nope.yaml")
