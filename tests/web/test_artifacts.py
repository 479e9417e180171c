"""Artifact downloads: Starlette's FileResponse serves the ranges; the route adds the hash check,
the caching and safety headers, and a clean file name. No narration needed: blobs are put directly."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from emoflow.web.api import download_name, extension
from stores.records import NewArtifact
from tests.web.conftest import Inspector

BLOB = bytes(range(256)) * 40  # 10,240 bytes, each position recognisable
SIZE = len(BLOB)


@pytest.fixture(scope="module")
def blob(inspector: Inspector) -> dict[str, str]:
    ref = inspector.store.put_artifact(NewArtifact("speech", "speech", "audio/wav", data=BLOB))
    return {"url": f"/artifacts/{ref.sha256}", "sha256": ref.sha256, "etag": f'"{ref.sha256}"'}


def get(inspector: Inspector, url: str, method: str = "GET", **headers: str) -> Any:
    sent = inspector.viewer | {k.replace("_", "-"): v for k, v in headers.items()}
    return inspector.client.request(method, url, headers=sent)


def assert_safe(response: Any) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == "default-src 'none'; sandbox"


def test_whole_artifact(inspector: Inspector, blob: dict[str, str]) -> None:
    whole = get(inspector, blob["url"])
    assert whole.status_code == 200 and whole.content == BLOB
    assert hashlib.sha256(whole.content).hexdigest() == blob["sha256"]
    assert whole.headers["content-type"] == "audio/wav"
    assert whole.headers["content-length"] == str(SIZE) and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["etag"] == blob["etag"]
    assert whole.headers["cache-control"] == "private, max-age=31536000, immutable"
    assert whole.headers["content-disposition"] == 'inline; filename="speech.wav"'
    assert_safe(whole)


def test_single_and_suffix_ranges(inspector: Inspector, blob: dict[str, str]) -> None:
    part = get(inspector, blob["url"], Range="bytes=100-199")
    assert part.status_code == 206 and part.content == BLOB[100:200]
    assert (
        part.headers["content-range"] == f"bytes 100-199/{SIZE}" and part.headers["content-length"] == "100"
    )
    assert part.headers["etag"] == blob["etag"]
    assert_safe(part)
    tail = get(inspector, blob["url"], Range="bytes=-10")
    assert tail.status_code == 206 and tail.content == BLOB[-10:]
    assert tail.headers["content-range"] == f"bytes {SIZE - 10}-{SIZE - 1}/{SIZE}"
    rest = get(inspector, blob["url"], Range="bytes=10000-")
    assert rest.status_code == 206 and rest.content == BLOB[10000:]
    clamped = get(inspector, blob["url"], Range="bytes=10200-99999")  # the end is clamped to the file
    assert clamped.status_code == 206 and clamped.content == BLOB[10200:]


def test_several_ranges_come_as_multipart(inspector: Inspector, blob: dict[str, str]) -> None:
    both = get(inspector, blob["url"], Range="bytes=0-9, 20-29")
    assert both.status_code == 206
    assert both.headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert f"Content-Range: bytes 0-9/{SIZE}".encode() in both.content
    assert f"Content-Range: bytes 20-29/{SIZE}".encode() in both.content
    assert BLOB[0:10] in both.content and BLOB[20:30] in both.content


def test_unsatisfiable_range_is_416_and_keeps_the_safety_headers(
    inspector: Inspector, blob: dict[str, str]
) -> None:
    beyond = get(inspector, blob["url"], Range=f"bytes={SIZE}-")
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{SIZE}"
    assert_safe(beyond)
    none_inside = get(inspector, blob["url"], Range=f"bytes={SIZE}-, {SIZE + 10}-{SIZE + 20}")
    assert none_inside.status_code == 416 and none_inside.headers["content-range"] == f"bytes */{SIZE}"


@pytest.mark.parametrize(
    "header",
    ["bytes=abc", "bytes=", "bytes=-", "bytes=5-2", "items=0-1", "bytes 0-9", "bytes=0-9,abc-def,5-2"],
)
def test_an_invalid_range_is_ignored(inspector: Inspector, blob: dict[str, str], header: str) -> None:
    """RFC 9110 14.2: a Range that does not parse (or names a unit we do not know) is ignored, so the
    whole artifact comes back, not a 400 or 416."""
    ignored = get(inspector, blob["url"], Range=header)
    assert ignored.status_code == 200 and ignored.content == BLOB, header
    assert ignored.headers["content-length"] == str(SIZE) and "content-range" not in ignored.headers
    assert_safe(ignored)


def test_ranges_past_the_end_are_dropped_when_others_are_inside(
    inspector: Inspector, blob: dict[str, str]
) -> None:
    """RFC 9110 15.5.17: 416 only when no range overlaps the artifact; else the ones that do are sent."""
    one = get(inspector, blob["url"], Range=f"bytes=0-9, {SIZE}-")
    assert one.status_code == 206 and one.content == BLOB[:10]
    assert one.headers["content-range"] == f"bytes 0-9/{SIZE}"
    two = get(inspector, blob["url"], Range=f"bytes=0-9, {SIZE + 5}-{SIZE + 9}, 20-29")
    assert two.status_code == 206 and two.headers["content-type"].startswith("multipart/byteranges")
    assert BLOB[0:10] in two.content and BLOB[20:30] in two.content
    assert f"/{SIZE}".encode() in two.content and f"{SIZE + 5}-".encode() not in two.content


def test_if_range_and_if_none_match(inspector: Inspector, blob: dict[str, str]) -> None:
    same = get(inspector, blob["url"], Range="bytes=0-9", If_Range=blob["etag"])
    assert same.status_code == 206 and same.content == BLOB[:10]
    other = get(inspector, blob["url"], Range="bytes=0-9", If_Range='"' + "0" * 64 + '"')
    assert other.status_code == 200 and other.content == BLOB  # the range was for another version
    for header in (blob["etag"], f'"{"1" * 64}", {blob["etag"]}', f"W/{blob['etag']}", "*"):
        cached = get(inspector, blob["url"], If_None_Match=header)
        assert cached.status_code == 304 and cached.content == b"", header
        assert cached.headers["etag"] == blob["etag"]
        assert cached.headers["cache-control"] == "private, max-age=31536000, immutable"
    assert get(inspector, blob["url"], If_None_Match='"' + "1" * 64 + '"').status_code == 200


def test_head_sends_headers_only(inspector: Inspector, blob: dict[str, str]) -> None:
    head = get(inspector, blob["url"], "HEAD")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(SIZE) and head.headers["etag"] == blob["etag"]
    assert head.headers["content-type"] == "audio/wav"
    ranged = get(inspector, blob["url"], "HEAD", Range="bytes=0-9")
    assert ranged.status_code == 206 and ranged.content == b"" and ranged.headers["content-length"] == "10"
    assert get(inspector, "/artifacts/" + "0" * 64, "HEAD").status_code == 404
    assert inspector.client.head(blob["url"]).status_code == 401


@pytest.mark.parametrize(
    ("name", "filename"),
    [
        ("take-2", "take-2.wav"),
        ("take-2.wav", "take-2.wav"),
        ("take-2.html", "take-2.html.wav"),  # the extension always follows the media type
        ("../../etc/passwd", "etc_passwd.wav"),
        ('a"b\r\nSet-Cookie: x=1', "a_b_Set-Cookie_x_1.wav"),
        ("été.wav", "t_.wav"),
        ("...", "artifact.wav"),
    ],
)
def test_content_disposition_names_are_clean(
    inspector: Inspector, blob: dict[str, str], name: str, filename: str
) -> None:
    response = inspector.client.get(blob["url"], params={"name": name}, headers=inspector.viewer)
    assert response.status_code == 200
    assert response.headers["content-disposition"] == f'inline; filename="{filename}"'
    assert "set-cookie" not in response.headers


def test_file_names_from_kind_and_media_type() -> None:
    assert download_name("video", "video/mp4") == "video.mp4"
    assert download_name("curve-plot", "image/png") == "curve-plot.png"
    assert download_name("captions", "text/vtt; charset=utf-8") == "captions.vtt"
    assert download_name("portrait", "image/jpeg") == "portrait.jpg"
    assert download_name("efp-model", "application/vnd.safetensors") == "efp-model.safetensors"
    assert extension("application/x-something-odd") == ".bin"


def test_a_corrupt_blob_is_never_served(inspector: Inspector) -> None:
    ref = inspector.store.put_artifact(NewArtifact("frames", "frames", "video/mp4", data=b"frame" * 1000))
    path = Path(inspector.store.blobs.path_for(ref.sha256))
    path.chmod(0o644)
    path.write_bytes(b"tampered" + b"frame" * 999)
    url = f"/artifacts/{ref.sha256}"
    for headers in ({}, {"Range": "bytes=0-9"}):
        response = inspector.client.get(url, headers=inspector.viewer | headers)
        assert response.status_code == 404 and "corrupt" in response.json()["detail"]
    assert get(inspector, url, "HEAD").status_code == 404
