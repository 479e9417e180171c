"""The submission forms carry every job field: the API form is derived from JobSpec, and the HTML
form's portrait upload reaches the job. Flows are not started: the launcher only records them."""

from __future__ import annotations

from typing import Any

import pytest

from kernel.jobs import JobSpec
from tests.web.conftest import Inspector, png_bytes

# set by the server, never by a form: paths are the server's, the submitter is the token's
SERVER_SIDE = {"script_file", "output_dir", "submitter"}


def api_form_fields(openapi: dict[str, Any]) -> dict[str, Any]:
    """The properties of POST /jobs's multipart body, following $refs into the components."""
    body = openapi["paths"]["/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    while "$ref" in body:
        body = openapi["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    return dict(body["properties"])


def test_api_form_accepts_every_job_field(inspector: Inspector) -> None:
    fields = api_form_fields(inspector.app.openapi())
    # computed now, so a field added to JobSpec fails here until the form carries it
    expected = set(JobSpec.model_fields) - SERVER_SIDE
    missing = expected - set(fields)
    assert not missing, f"POST /jobs does not accept JobSpec fields {sorted(missing)}"
    assert not SERVER_SIDE & set(fields), "server-side fields must not be settable over HTTP"
    assert "portrait_builtin" in fields and "contentMediaType" in str(fields["portrait"])


def test_api_form_documents_jobspec_constraints(inspector: Inspector) -> None:
    fields = api_form_fields(inspector.app.openapi())
    spec = JobSpec.model_json_schema()["properties"]
    for name in ("fps", "size", "steps", "guidance", "tts_engine"):
        assert fields[name]["anyOf"] == spec[name]["anyOf"], name


def test_api_form_fields_reach_the_job(inspector: Inspector, launched: list[str]) -> None:
    form = {
        "script": "Hello there.",
        "portrait_builtin": "skimage:astronaut",
        "name": "all-fields",
        "steps": "7",
        "guidance": "3.5",
        "device": "cpu",
        "size": "128",
        "face_index": "0",
        # ignored: the server decides these
        "submitter": "mallory",
        "output_dir": "/tmp/not-here",
    }
    response = inspector.client.post("/jobs", data=form, headers=inspector.submitter)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert launched == [job_id]
    job = inspector.client.get(f"/jobs/{job_id}", headers=inspector.viewer).json()
    assert job["submitter"] == "alice" and job["name"] == "all-fields"
    options = job["options"]
    assert (options["steps"], options["guidance"], options["device"], options["size"]) == (7, 3.5, "cpu", 128)
    assert inspector.store.job(job_id).options["output_dir"] != "/tmp/not-here"


@pytest.mark.parametrize(("field", "value"), [("steps", "0"), ("guidance", "loud"), ("fps", "999")])
def test_api_form_values_are_validated_by_jobspec(
    inspector: Inspector, launched: list[str], field: str, value: str
) -> None:
    form = {"script": "Hi.", "portrait_builtin": "skimage:astronaut", field: value}
    response = inspector.client.post("/jobs", data=form, headers=inspector.submitter)
    assert response.status_code == 422 and field in response.json()["detail"]
    assert launched == []


def test_html_form_uploads_a_portrait(inspector: Inspector, launched: list[str]) -> None:
    from skimage import data

    browser = inspector.browser()
    browser.post("/ui/login", data={"token": inspector.submitter_secret})
    page = browser.get("/ui/submit")
    assert page.status_code == 200 and 'name="steps"' in page.text  # "More options" has the rest
    face = png_bytes(data.astronaut())
    saved = browser.post(
        "/ui/submit",
        data={"script": "Hello from the page.", "name": "page-upload", "portrait_builtin": ""},
        files={"portrait": ("me.png", face, "image/png")},
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    job_id = saved.headers["location"].removeprefix("/ui/jobs/")
    assert launched == [job_id]
    job = inspector.store.job(job_id)
    assert (job.name, job.submitter) == ("page-upload", "alice")
    portrait = inspector.store.artifact(job.portrait_sha256)
    assert portrait.media_type == "image/png"
    height, width = data.astronaut().shape[:2]
    assert (portrait.metadata["width"], portrait.metadata["height"]) == (width, height)


def test_html_form_upload_is_a_starlette_upload_and_reaches_the_job(
    inspector: Inspector, launched: list[str]
) -> None:
    """Issue #18: request.form() gives Starlette's UploadFile, not FastAPI's subclass; a check against
    the subclass made every upload look absent. A resized astronaut, so its bytes are not the built-in's."""
    import hashlib

    from skimage import data

    browser = inspector.logged_in(inspector.submitter_secret)
    face = png_bytes(data.astronaut(), size=400)
    saved = browser.post(
        "/ui/submit",
        data={"script": "Hello from an upload.", "name": "resized-upload", "portrait_builtin": ""},
        files={"portrait": ("face.png", face, "image/png")},
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    job = inspector.store.job(saved.headers["location"].removeprefix("/ui/jobs/"))
    assert launched == [job.id]
    assert job.portrait_sha256 == hashlib.sha256(face).hexdigest()  # the upload's own bytes
    portrait = inspector.store.artifact(job.portrait_sha256)
    assert (portrait.metadata["width"], portrait.metadata["height"]) == (400, 400)


def test_html_form_refuses_an_upload_and_a_builtin_together(
    inspector: Inspector, launched: list[str]
) -> None:
    """Both portraits given: a clear 422 on the page, not one of them silently dropped."""
    from skimage import data

    browser = inspector.logged_in(inspector.submitter_secret)
    both = browser.post(
        "/ui/submit",
        data={"script": "Hello.", "portrait_builtin": "skimage:astronaut"},
        files={"portrait": ("face.png", png_bytes(data.astronaut(), size=400), "image/png")},
        follow_redirects=False,
    )
    assert both.status_code == 422, both.text
    assert "either" in both.text and "not both" in both.text
    assert 'value="skimage:astronaut" selected' in both.text  # the form keeps what was chosen
    assert launched == []


def test_html_form_offers_only_builtins_with_a_face(inspector: Inspector) -> None:
    """skimage:chelsea is a cat: it always fails the face check, so the form does not offer it."""
    page = inspector.logged_in(inspector.submitter_secret).get("/ui/submit")
    assert page.status_code == 200
    assert 'value="skimage:astronaut"' in page.text and "chelsea" not in page.text


def test_html_form_without_any_portrait_says_so_plainly(inspector: Inspector, launched: list[str]) -> None:
    browser = inspector.logged_in(inspector.submitter_secret)
    # a browser sends the empty file field as a part with no file name
    neither = browser.post(
        "/ui/submit",
        data={"script": "Hello.", "portrait_builtin": ""},
        files={"portrait": ("", b"", "application/octet-stream")},
    )
    assert neither.status_code == 422 and "choose a portrait" in neither.text
    assert launched == []
