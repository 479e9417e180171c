"""Job fields have one source, JobSpec: the CLI, engine registry, and limits follow it."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from emoflow.cli import NARRATE_FIELDS
from kernel.errors import InputError
from kernel.jobs import MAX_DESCRIPTION_CHARS, MAX_SCRIPT_CHARS, JobOptions, JobSpec, parse_job
from kernel.manifest import load_manifest
from kernel.settings import AlignerName, EfpEngineName, PlannerName, RendererName, Settings, TtsEngineName
from tasks.engines import ENGINES


def test_narrate_takes_every_job_field_as_an_option() -> None:
    assert set(NARRATE_FIELDS) == set(JobSpec.model_fields)


@pytest.mark.parametrize(
    ("option", "names"),
    [
        ("planner", PlannerName),
        ("tts_engine", TtsEngineName),
        ("aligner", AlignerName),
        ("efp_engine", EfpEngineName),
        ("renderer", RendererName),
    ],
)
def test_engine_names_are_the_registry(option: str, names: object) -> None:
    assert set(get_args(names)) == set(ENGINES[option])


def test_unknown_engine_is_refused_naming_the_choices(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="renderer: Input should be 'preview' or 'diffusion', not 'pixar'"):
        parse_job({"script": "Hi.", "portrait": "skimage:astronaut", "renderer": "pixar"}, tmp_path)


def test_options_are_resolved_once_and_job_fields_win(tmp_path: Path) -> None:
    settings = Settings(output_dir=tmp_path, fps=30, tts_engine="espeak", efp_model="base-model")
    spec = parse_job({"script": "Hi.", "portrait": "skimage:astronaut", "fps": 12}, tmp_path)
    options = spec.options(settings)
    assert isinstance(options, JobOptions)
    assert (options.fps, options.tts_engine, options.efp_model) == (12, "espeak", "base-model")
    # what the store keeps reads back as the same options, whatever the settings are later
    assert JobOptions.model_validate(options.model_dump()) == options


def test_script_limit_holds_for_job_files_script_files_and_manifests(tmp_path: Path) -> None:
    long = "word " * (MAX_SCRIPT_CHARS // 5 + 1)
    with pytest.raises(InputError, match=f"script: String should have at most {MAX_SCRIPT_CHARS}"):
        parse_job({"script": long, "portrait": "skimage:astronaut"}, tmp_path)
    (tmp_path / "long.txt").write_text(long)
    with pytest.raises(InputError, match="at most"):
        parse_job({"script_file": "long.txt", "portrait": "skimage:astronaut"}, tmp_path)
    manifest = tmp_path / "jobs.yaml"
    manifest.write_text(
        f"- {{script: '{long}', portrait: 'skimage:astronaut'}}\n- {{script: ok, portrait: x.png}}\n"
    )
    rows = load_manifest(manifest)
    assert rows[0].error and "at most" in rows[0].error and rows[1].spec is not None


def test_description_limit(tmp_path: Path) -> None:
    brief = "calm " * (MAX_DESCRIPTION_CHARS // 5 + 1)
    with pytest.raises(InputError, match="description: String should have at most"):
        parse_job({"script": "Hi.", "description": brief, "portrait": "skimage:astronaut"}, tmp_path)


def test_speech_length_estimate_ignores_inline_tags(tmp_path: Path) -> None:
    spec = parse_job({"script": "[angry 0.8] " + "word " * 260, "portrait": "skimage:astronaut"}, tmp_path)
    assert spec.speech_seconds_estimate() == pytest.approx(100, rel=0.01)
