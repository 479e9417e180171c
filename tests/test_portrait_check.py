"""Submission remembers that a portrait was accepted, by its bytes, its framing options and the checker's
code, so a re-submitted job skips face detection; refusals are always checked again."""

from __future__ import annotations

from pathlib import Path

import pytest

import models.vision.face
from kernel.errors import InputError
from kernel.jobs import JobSpec
from kernel.settings import get_settings
from tasks.context import open_store
from tasks.intake import submit_job


@pytest.fixture
def detections(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts calls of prepare_portrait (the face detection submission runs)."""
    calls: list[int] = []
    real = models.vision.face.prepare_portrait

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(models.vision.face, "prepare_portrait", counted)
    return calls


def _spec(**fields: object) -> JobSpec:
    return JobSpec.model_validate(
        {"name": "check", "script": "Hello there.", "portrait": "skimage:astronaut"} | fields
    )


@pytest.mark.parametrize("emoflow_home", ["sqlite"], indirect=True)
def test_an_accepted_portrait_is_not_detected_again(emoflow_home: Path, detections: list[int]) -> None:
    store = open_store()
    submit_job(_spec(), get_settings(), store)
    submit_job(_spec(name="again"), get_settings(), store)
    assert len(detections) == 1
    submit_job(_spec(size=256), get_settings(), store)  # other framing: checked again
    assert len(detections) == 2


@pytest.mark.parametrize("emoflow_home", ["sqlite"], indirect=True)
def test_a_refused_portrait_is_refused_every_time(emoflow_home: Path, detections: list[int]) -> None:
    store = open_store()
    for _ in range(2):
        with pytest.raises(InputError, match="face_index 3 is out of range"):
            submit_job(_spec(face_index=3), get_settings(), store)
    assert len(detections) == 2
