"""Issue #18: a request the session cookie authenticates changes state only when it comes from the
inspector's own pages. SameSite=Strict does not stop a page on another port of the same host (or a
sibling subdomain): to the browser that is the same site, so the cookie goes along."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from emoflow.web.auth import COOKIE
from tests.web.conftest import ORIGIN, Inspector

OTHER_PORT = "http://127.0.0.1:8799"  # same site as the inspector on 127.0.0.1, another origin
JOB = {"script": "Hello there.", "portrait_builtin": "skimage:astronaut"}


def cookie_client(inspector: Inspector, secret: str) -> TestClient:
    """A client holding the session cookie that sends no Origin unless a test names one."""
    client = TestClient(inspector.app)
    client.cookies.set(COOKIE, secret)
    return client


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": OTHER_PORT},
        {"Origin": "http://testserver.evil.example"},
        {"Origin": "https://testserver"},  # another scheme is another origin
        {"Origin": "http://testserver:8080"},
        {"Origin": "null"},  # sandboxed frames and some redirects
        {"Referer": f"{OTHER_PORT}/attack.html"},
        {},  # neither header: nothing shows the request came from our pages
    ],
    ids=["other-port", "other-host", "other-scheme", "explicit-other-port", "null", "referer", "none"],
)
def test_cookie_post_from_another_origin_is_refused(
    inspector: Inspector, launched: list[str], headers: dict[str, str]
) -> None:
    client = cookie_client(inspector, inspector.submitter_secret)
    refused = client.post("/jobs", data=JOB, headers=headers)
    assert refused.status_code == 403, refused.text
    assert "cross-origin" in refused.json()["detail"] and "bearer" in refused.json()["detail"]
    assert launched == []


@pytest.mark.parametrize(
    "headers",
    [{"Origin": ORIGIN}, {"Origin": "http://testserver:80"}, {"Referer": f"{ORIGIN}/ui/submit"}],
    ids=["origin", "default-port", "referer"],
)
def test_cookie_post_from_the_inspector_itself_is_accepted(
    inspector: Inspector, launched: list[str], headers: dict[str, str]
) -> None:
    client = cookie_client(inspector, inspector.submitter_secret)
    accepted = client.post("/jobs", data=JOB, headers=headers)
    assert accepted.status_code == 202, accepted.text
    assert launched == [accepted.json()["job_id"]]


def test_curve_edit_with_the_cookie_needs_our_origin(inspector: Inspector) -> None:
    client = cookie_client(inspector, inspector.submitter_secret)
    edit = {"edits": [{"index": 0, "label": "happy", "intensity": 0.5}]}
    refused = client.post("/runs/no-such-run/curve", json=edit, headers={"Origin": OTHER_PORT})
    assert refused.status_code == 403 and "cross-origin" in refused.json()["detail"]
    # from our own origin it gets as far as looking the run up
    assert client.post("/runs/no-such-run/curve", json=edit, headers={"Origin": ORIGIN}).status_code != 403


def test_bearer_token_calls_need_no_origin(inspector: Inspector, launched: list[str]) -> None:
    """A bearer token is never sent by a browser on its own, so it is no CSRF vector."""
    client = TestClient(inspector.app)
    accepted = client.post("/jobs", data=JOB, headers=inspector.submitter | {"Origin": OTHER_PORT})
    assert accepted.status_code == 202, accepted.text
    assert launched == [accepted.json()["job_id"]]


def test_reads_with_the_cookie_need_no_origin(inspector: Inspector) -> None:
    client = cookie_client(inspector, inspector.viewer_secret)
    assert client.get("/runs", headers={"Origin": OTHER_PORT}).status_code == 200
    assert client.get("/ui/runs", headers={"Origin": OTHER_PORT}).status_code == 200


def test_login_from_another_origin_is_refused(inspector: Inspector) -> None:
    """Else another site could log a victim in as the attacker (login CSRF)."""
    client = TestClient(inspector.app)
    form = {"token": inspector.viewer_secret}
    refused = client.post("/ui/login", data=form, headers={"Origin": OTHER_PORT}, follow_redirects=False)
    assert refused.status_code == 403 and "cross-origin" in refused.text
    assert COOKIE not in refused.headers.get("set-cookie", "")
    assert client.post("/ui/login", data=form, follow_redirects=False).status_code == 403  # no Origin
    accepted = client.post("/ui/login", data=form, headers={"Origin": ORIGIN}, follow_redirects=False)
    assert accepted.status_code == 303 and COOKIE in accepted.headers["set-cookie"]


def test_logout_from_another_origin_is_refused(inspector: Inspector) -> None:
    client = cookie_client(inspector, inspector.viewer_secret)
    refused = client.post("/ui/logout", headers={"Origin": OTHER_PORT}, follow_redirects=False)
    assert refused.status_code == 403 and "set-cookie" not in refused.headers
    accepted = client.post("/ui/logout", headers={"Origin": ORIGIN}, follow_redirects=False)
    assert accepted.status_code == 303 and f'{COOKIE}=""' in accepted.headers["set-cookie"]


@pytest.mark.parametrize("path", ["/ui/submit", "/ui/runs/no-such-run/edit"])
def test_page_forms_from_another_origin_are_refused(
    inspector: Inspector, launched: list[str], path: str
) -> None:
    client = cookie_client(inspector, inspector.submitter_secret)
    for headers in ({"Origin": OTHER_PORT}, {}):
        refused = client.post(path, data=JOB, headers=headers, follow_redirects=False)
        assert refused.status_code == 403 and "cross-origin" in refused.text, headers
    assert launched == []
