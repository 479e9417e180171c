"""The bad-input catalogue: each case names the exact error class and a message fragment, and
nothing reaches the store. Hypothesis fuzzes the description parser and the job-file loader."""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sqlalchemy import text
from typer.testing import CliRunner

from emoflow.cli import app
from kernel.errors import InputError
from kernel.jobs import load_job_file, parse_job
from kernel.manifest import load_manifest
from models.audio import read_wav
from models.plan.rules import RulePlanner
from tasks.intake import read_portrait

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

runner = CliRunner()
GOOD = "script: Hello.\nportrait: skimage:astronaut\n"


def table_counts(home: Path) -> tuple[int, ...]:
    """Rows per table, or zeros when no database was even created."""
    from tasks.context import open_store

    if not (home / "emoflow.db").exists():
        return (0, 0, 0, 0)
    with open_store().engine.connect() as connection:
        return tuple(
            connection.execute(text(f"SELECT count(*) FROM {t}")).scalar()
            for t in ("jobs", "runs", "steps", "artifacts")
        )


# -- job files: loader raises InputError, and `narrate` writes nothing ---------------------------

JOB_FILES = [
    ("empty-file", "", "a job must be a mapping"),
    ("a-list", "- script: hi\n", "a job must be a mapping"),
    ("a-scalar", "just words\n", "a job must be a mapping"),
    ("bad-yaml", "script: [unclosed\n", "is not valid YAML"),
    ("tab-indent", "script: hi\n\tportrait: x\n", "is not valid YAML"),
    ("no-portrait", "script: Hello.\n", "portrait: Field required"),
    ("unknown-field", GOOD + "colour: red\n", "colour: Extra inputs are not permitted"),
    ("bad-name", GOOD + "name: 'my job!'\n", "name: String should match pattern"),
    ("fps-zero", GOOD + "fps: 0\n", "fps: Input should be greater than or equal to 1"),
    ("fps-text", GOOD + "fps: fast\n", "fps: Input should be a valid integer"),
    ("size-huge", GOOD + "size: 99999\n", "size: Input should be less than or equal to 2048"),
    ("size-tiny", GOOD + "size: 8\n", "size: Input should be greater than or equal to 64"),
    ("head-motion", GOOD + "head_motion: 9\n", "head_motion: Input should be less than or equal to 3"),
    ("face-index", GOOD + "face_index: -1\n", "face_index: Input should be greater than or equal to 0"),
    ("steps-zero", GOOD + "steps: 0\n", "steps: Input should be greater than or equal to 1"),
    ("guidance", GOOD + "guidance: 0.5\n", "guidance: Input should be greater than or equal to 1"),
    ("both-scripts", GOOD + "script_file: s.txt\n", "give either script or script_file, not both"),
    ("script-missing", "script_file: absent.txt\nportrait: skimage:astronaut\n", "cannot read script_file"),
    ("script-binary", "script_file: bin.txt\nportrait: skimage:astronaut\n", "cannot read script_file"),
    (
        "script-a-dict",
        "script: {a: 1}\nportrait: skimage:astronaut\n",
        "script: Input should be a valid string",
    ),
]


@pytest.mark.parametrize(("case", "body", "fragment"), JOB_FILES, ids=[c[0] for c in JOB_FILES])
def test_bad_job_file(emoflow_home: Path, tmp_path: Path, case: str, body: str, fragment: str) -> None:
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00bad")
    job = tmp_path / "job.yaml"
    job.write_text(body, encoding="utf-8")
    with pytest.raises(InputError, match=None) as caught:
        load_job_file(job)
    assert type(caught.value) is InputError and fragment in str(caught.value)
    result = runner.invoke(app, ["narrate", str(job)])
    assert result.exit_code == 1 and fragment in result.stderr
    assert table_counts(emoflow_home) == (0, 0, 0, 0)


def test_job_file_that_is_not_utf8(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_bytes(b"script: caf\xe9\n")
    with pytest.raises(InputError, match="cannot read job file"):
        load_job_file(job)


def test_job_file_that_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read job file"):
        load_job_file(tmp_path)


# -- scripts and descriptions: the planner --------------------------------------------------------

SCRIPTS = [
    ("only-tags", "[angry] [sad]", "", "script is empty"),
    ("only-punctuation", "... !!! ???", "", "script is empty"),
    ("empty-tag", "Hello [] there.", "", "empty tag []"),
    ("unknown-tag", "[grumpy] Hello.", "", "unknown emotion in tag [grumpy]"),
    ("negated-tag", "[not angry] Hello.", "", "unknown emotion in tag [not angry]"),
    ("two-emotions", "[angry sad] Hello.", "", "names more than one emotion"),
    ("intensity-high", "[angry 1.5] Hello.", "", "intensity 1.5 in tag [angry 1.5] is outside 0..1"),
    ("intensity-word", "[angry banana] Hello.", "", "malformed intensity 'banana'"),
    ("two-intensities", "[angry 0.5 0.7] Hello.", "", "malformed intensity"),
]


@pytest.mark.parametrize(("case", "script", "description", "fragment"), SCRIPTS, ids=[c[0] for c in SCRIPTS])
def test_bad_script(case: str, script: str, description: str, fragment: str) -> None:
    with pytest.raises(InputError) as caught:
        RulePlanner().plan(script, description)
    assert type(caught.value) is InputError and fragment in str(caught.value)


# -- images and audio ---------------------------------------------------------------------------


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


IMAGES = [
    ("zero-bytes", b"", "is not an image file"),
    ("text", b"plain text, not pixels", "is not an image file"),
    ("truncated-png", png(64, 64)[:60], "could not be read"),
    ("too-small", png(8, 8), "is too small (8x8 px)"),
    ("missing", None, "portrait image not found"),
]


@pytest.mark.parametrize(("case", "data", "fragment"), IMAGES, ids=[c[0] for c in IMAGES])
def test_bad_portrait(tmp_path: Path, case: str, data: bytes | None, fragment: str) -> None:
    path = tmp_path / "face.png"
    if data is not None:
        path.write_bytes(data)
    with pytest.raises(InputError) as caught:
        read_portrait(str(path))
    assert type(caught.value) is InputError and fragment in str(caught.value)


def wav_header_only() -> bytes:
    return (
        b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
    )


@pytest.mark.parametrize(
    "data", [b"", b"not audio at all", b"RIFF\x00\x00\x00\x00WAVE", wav_header_only()[:30]]
)
def test_bad_audio(data: bytes) -> None:
    with pytest.raises(InputError, match="not a readable audio file"):
        read_wav(data)


# -- manifests ------------------------------------------------------------------------------------

MANIFESTS = [
    ("jobs.txt", "whatever", "must be a .csv file"),
    ("jobs.csv", "", "needs a header row"),
    ("jobs.csv", "id,script\na,Hello\n", "needs a header row with at least script and portrait"),
    ("jobs.yaml", "jobs: [unclosed\n", "is not valid YAML"),
    ("jobs.yaml", "jobs: 3\n", "must be a list of jobs"),
    ("jobs.yaml", "[]\n", "holds no jobs"),
    ("absent.csv", None, "does not exist"),
]


@pytest.mark.parametrize(
    ("name", "body", "fragment"), MANIFESTS, ids=[f"{m[0]}-{i}" for i, m in enumerate(MANIFESTS)]
)
def test_bad_manifest(tmp_path: Path, name: str, body: str | None, fragment: str) -> None:
    path = tmp_path / name
    if body is not None:
        path.write_text(body, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_manifest(path)
    assert type(caught.value) is InputError and fragment in str(caught.value)


def test_bad_manifest_rows_become_row_errors_not_crashes(tmp_path: Path) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text("- 3\n- {script: hi}\n- {script: hi, portrait: skimage:astronaut, fps: 0}\n")
    rows = load_manifest(path)
    assert [r.spec for r in rows] == [None, None, None]
    assert rows[0].error == "a row must be a mapping of job fields"
    assert "portrait" in (rows[1].error or "") and "fps" in (rows[2].error or "")


# -- the HTTP API ---------------------------------------------------------------------------------


@pytest.fixture
def api(emoflow_home: Path) -> Iterator[tuple[TestClient, dict[str, str], dict[str, str]]]:
    from fastapi.testclient import TestClient

    from emoflow.web.app import create_app
    from emoflow.web.limits import Limits
    from stores.tokens import create_token
    from tasks.context import open_store

    store = open_store()
    _, writer = create_token(store, "w", "submitter", actor="test")
    _, viewer = create_token(store, "v", "viewer", actor="test")
    app_ = create_app(store, limits=Limits(max_upload_bytes=4096, max_script_chars=50))
    with TestClient(app_) as client:
        yield client, {"Authorization": f"Bearer {writer}"}, {"Authorization": f"Bearer {viewer}"}


API_CASES = [
    (
        "no-token",
        None,
        {"script": "Hi.", "portrait_builtin": "skimage:astronaut"},
        None,
        401,
        "a valid token",
    ),
    ("viewer", "viewer", {"script": "Hi.", "portrait_builtin": "skimage:astronaut"}, None, 403, "viewer"),
    ("no-portrait", "writer", {"script": "Hi."}, None, 422, "give exactly one of a portrait"),
    (
        "two-portraits",
        "writer",
        {"script": "Hi.", "portrait_builtin": "skimage:astronaut"},
        png(32, 32),
        422,
        "give exactly one of a portrait",
    ),
    (
        "bad-builtin",
        "writer",
        {"script": "Hi.", "portrait_builtin": "http://evil"},
        None,
        422,
        "portrait_builtin must be",
    ),
    (
        "long-script",
        "writer",
        {"script": "x" * 51, "portrait_builtin": "skimage:astronaut"},
        None,
        422,
        "script is longer than 50",
    ),
    ("not-an-image", "writer", {"script": "Hi."}, b"GIF89a nope", 415, "portrait is not a readable image"),
    ("too-large", "writer", {"script": "Hi."}, b"\x89PNG" + b"0" * 5000, 413, "larger than 4096 bytes"),
    (
        "bad-fps",
        "writer",
        {"script": "Hi.", "portrait_builtin": "skimage:astronaut", "fps": "0"},
        None,
        422,
        "fps",
    ),
    (
        "no-face",
        "writer",
        {"script": "Hi.", "portrait_builtin": "skimage:chelsea"},
        None,
        422,
        "no human face",
    ),
]


@pytest.mark.parametrize(
    ("case", "who", "form", "upload", "code", "fragment"), API_CASES, ids=[c[0] for c in API_CASES]
)
@pytest.mark.parametrize("emoflow_home", ["sqlite"], indirect=True)
def test_bad_api_request(
    api,
    emoflow_home: Path,
    case: str,
    who: str | None,
    form: dict[str, str],
    upload: bytes | None,
    code: int,
    fragment: str,
) -> None:
    client, writer, viewer = api
    headers = {"writer": writer, "viewer": viewer}.get(who or "", {})
    files = {"portrait": ("face.png", upload, "image/png")} if upload is not None else None
    response = client.post("/jobs", data=form, files=files, headers=headers)
    assert response.status_code == code, response.text
    assert fragment in str(response.json()["detail"])
    counts = table_counts(emoflow_home)
    assert counts == (0, 0, 0, 0)


# -- fuzzing --------------------------------------------------------------------------------------

_planner = RulePlanner()
_words = st.sampled_from(
    [
        "Hello",
        "there",
        "[angry 0.8]",
        "[sad]",
        "[",
        "]",
        "[very",
        "happy]",
        "0.5",
        "not",
        "%",
        "!",
        "\n",
        "furious",
        "slightly",
        "[neutral]",
        "[]",
        "[fear 120%]",
        "calm",
        ",",
        "[angry -1]",
        "ÿ",
        "🙂",
    ]
)
_scripts = st.one_of(st.text(max_size=80), st.lists(_words, max_size=12).map(" ".join))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    script=_scripts, description=st.one_of(st.text(max_size=60), st.lists(_words, max_size=8).map(" ".join))
)
def test_fuzz_planner_only_raises_input_errors(script: str, description: str) -> None:
    try:
        plan = _planner.plan(script, description)
    except InputError as exc:
        assert str(exc)
        return
    assert plan.words and all(0.0 <= w.intensity <= 1.0 for w in plan.words)


_yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20)),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)
_fields = st.sampled_from(
    [
        "name",
        "script",
        "script_file",
        "portrait",
        "fps",
        "size",
        "seed",
        "head_motion",
        "face_index",
        "output_dir",
        "weights",
        "steps",
        "guidance",
        "bogus",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(_yaml_values, st.dictionaries(_fields, _yaml_values, max_size=6)))
def test_fuzz_parse_job_only_raises_input_errors(tmp_path: Path, data: object) -> None:
    try:
        parse_job(data, tmp_path)
    except InputError as exc:
        assert str(exc)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.text(max_size=120), st.binary(max_size=120)))
def test_fuzz_job_file_loader_only_raises_input_errors(tmp_path: Path, body: str | bytes) -> None:
    job = tmp_path / "fuzz.yaml"
    job.write_bytes(body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass"))
    try:
        load_job_file(job)
    except InputError as exc:
        assert str(exc)
