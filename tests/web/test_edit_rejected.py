"""The curve editor's rejected edits: the form comes back as it was sent, the faulty word marked, and
nothing is committed. The run is recorded straight into the store and the launcher starts nothing,
so no flow runs (no Prefect server needed)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi.testclient import TestClient

from emoflow.web import pages
from emoflow.web.edit_form import form_edits, rejected_words
from kernel.errors import InputError, ItemError
from models.efp.edit import parse_edits
from stores.records import NewArtifact
from tests.web.conftest import Inspector

WORDS = [("Stop", "angry", 0.9), ("right", "neutral", 0.3), ("there", "sad", 0.5), ("now", "neutral", 0.2)]
CURVE = {
    "labels": ["neutral", "happy", "sad", "angry", "fear", "surprise", "disgust"],
    "engine": "test",
    "points": [
        {
            "index": i,
            "text": word,
            "start": 0.4 * i,
            "end": 0.4 * i + 0.35,
            "label": label,
            "intensity": intensity,
            "distribution": {label: 1.0},
            "sources": {"lexicon": {label: 1.0}},
            "weights": {"lexicon": 1.0},
        }
        for i, (word, label, intensity) in enumerate(WORDS)
    ],
}


@pytest.fixture(scope="module")
def run_id(inspector: Inspector) -> str:
    """A finished run with speech and a curve: what the editor edits."""
    store = inspector.store
    portrait = store.put_artifact(NewArtifact("portrait", "portrait", "image/png", data=b"not drawn"))
    job_id = store.submit_job(
        name="rejected", submitter="alice", script="Stop right there now.", description="angry",
        portrait=portrait, options={},
    )  # fmt: skip
    run = store.start_run(job_id, None)
    common = {"run_id": run, "engine_version": "1", "params": {}, "inputs": {"portrait": portrait}}
    outputs = {
        "plan": NewArtifact("plan", "plan", "application/json", data=b"{}", metadata={"words": 4}),
        "speak": NewArtifact("speech", "speech", "audio/wav", data=b"RIFF rejected speech"),
        "feel": NewArtifact("curve", "curve", "application/json", data=json.dumps(CURVE).encode()),
    }
    for n, (stage, artifact) in enumerate(outputs.items()):
        step = store.begin_step(stage=stage, engine="test", cache_key=f"{n + 3:x}" * 64, **common)
        store.commit_step(step, [artifact])
    store.finish_run(run)
    return str(run)


@pytest.fixture(scope="module")
def submitter(inspector: Inspector) -> TestClient:
    return inspector.logged_in(inspector.submitter_secret)


class Fields(HTMLParser):
    """The word table's fields: name -> (value or selected option, attributes)."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, tuple[str | None, dict[str, str | None]]] = {}
        self._select: str | None = None
        self._selected = False  # inside the <option selected> of the current <select>
        self.tokens: dict[str, dict[str, str | None]] = {}  # the transcript's words by data-index

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        name = found.get("name") or ""
        if tag == "input" and re.fullmatch(r"intensity_\d+", name):
            self.fields[name] = (found.get("value"), found)
        elif tag == "select" and name.startswith("label_"):
            self._select = name
            self.fields[name] = (None, found)
        elif tag == "option" and self._select and "selected" in found:
            self._selected = True
        elif tag == "span" and "tok" in (found.get("class") or "").split():
            self.tokens[found["data-index"] or ""] = found

    def handle_data(self, data: str) -> None:
        if self._select and self._selected:
            self.fields[self._select] = (data, self.fields[self._select][1])
            self._selected = False

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def parsed(page: str) -> Fields:
    fields = Fields()
    fields.feed(page)
    return fields


def whole_form() -> dict[str, str]:
    """What the untouched word table posts: every row, as the saved curve has it."""
    form = {f"label_{i}": label for i, (_, label, _) in enumerate(WORDS)}
    return form | {f"intensity_{i}": str(intensity) for i, (_, _, intensity) in enumerate(WORDS)}


def committed(inspector: Inspector, run_id: str) -> tuple[set[str], set[str], int]:
    """The job's runs, the store's blobs and the run's audit events: what a commit would add to."""
    store = inspector.store
    runs = {r.id for r in store.job_runs(store.run(run_id).job.id)}
    return runs, set(store.blobs.iter_shas()), len(store.audit_events())


def test_the_editor_shows_the_saved_curve_unmarked(submitter: TestClient, run_id: str) -> None:
    page = submitter.get(f"/ui/runs/{run_id}/edit")
    assert page.status_code == 200
    fields = parsed(page.text).fields
    assert fields["label_2"][0] == "sad" and fields["intensity_2"][0] == "0.5"
    assert fields["intensity_2"][1]["type"] == "range"
    assert 'aria-invalid="true"' not in page.text and 'id="edit-error"' not in page.text


@pytest.mark.parametrize(
    ("change", "word", "field", "needle"),
    [
        ({"intensity_2": "1.7"}, 2, "intensity", "1.7 is outside 0..1"),
        ({"intensity_2": "lots"}, 2, "intensity", "expected a number from 0 to 1"),
        ({"label_2": "grumpy"}, 2, "label", "unknown emotion &#39;grumpy&#39;"),
    ],
)
def test_a_rejected_edit_comes_back_as_sent_with_the_faulty_word_marked(
    inspector: Inspector,
    submitter: TestClient,
    run_id: str,
    launched: list[str],
    change: dict[str, str],
    word: int,
    field: str,
    needle: str,
) -> None:
    before = committed(inspector, run_id)
    # a valid change to word 0 comes first, then the faulty one: both must come back as typed
    form = whole_form() | {"label_0": "happy", "intensity_0": "0.65"} | change
    response = submitter.post(f"/ui/runs/{run_id}/edit", data=form, follow_redirects=False)
    assert response.status_code == 422, response.text
    assert needle in response.text
    page = parsed(response.text)
    fields = page.fields
    # the user's values, not the saved ones (word 0 was angry 0.9)
    assert fields["label_0"][0] == "happy" and fields["intensity_0"][0] == "0.65"
    for name, value in change.items():
        assert fields[name][0] == value, name
    # the faulty field is marked, and points at the message next to the form
    marked = {name for name, (_, attrs) in fields.items() if attrs.get("aria-invalid") == "true"}
    assert marked == {f"{field}_{word}"}
    attrs = fields[f"{field}_{word}"][1]
    assert "invalid" in (attrs.get("class") or "").split() and attrs["aria-describedby"] == "edit-error"
    assert re.search(r'<div class="error" id="edit-error" role="alert">\s*<p>Not saved: ', response.text)
    assert f'<a href="#word-{word}">word {word} “there”</a> ({field})' in response.text
    assert response.text.count(needle) == 1  # once, next to the form, not again at the top of the page
    # the transcript shows the sent values too, the faulty word marked; Undo still goes to the saved curve
    tokens = page.tokens
    assert tokens["0"]["data-label"] == "happy" and tokens["0"]["data-orig-label"] == "angry"
    assert "invalid" in (tokens[str(word)]["class"] or "").split()
    assert not any("invalid" in (tokens[i]["class"] or "").split() for i in ("0", "1", "3"))
    # nothing was committed or launched
    assert committed(inspector, run_id) == before and launched == []


def test_an_intensity_no_slider_holds_comes_back_as_text(submitter: TestClient, run_id: str) -> None:
    form = whole_form() | {"intensity_1": "1.7"}
    response = submitter.post(f"/ui/runs/{run_id}/edit", data=form)
    assert response.status_code == 422
    intensity = parsed(response.text).fields["intensity_1"]
    assert intensity[0] == "1.7" and intensity[1]["type"] == "text"  # a range input would clamp it to 1
    assert parsed(response.text).fields["intensity_2"][1]["type"] == "range"


def test_the_rejected_page_keeps_the_csp_rules(submitter: TestClient, run_id: str) -> None:
    from tests.web.test_hardening import InlineFinder

    response = submitter.post(f"/ui/runs/{run_id}/edit", data=whole_form() | {"label_3": "grumpy"})
    assert response.status_code == 422
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    finder = InlineFinder()
    finder.feed(response.text)
    assert finder.found == []
    sheet = submitter.get("/ui/page.css").text  # the marks' style is a class, never a style attribute
    assert '[aria-invalid="true"]' in sheet and ".tok.invalid" in sheet


def test_a_valid_edit_still_commits_and_redirects(
    inspector: Inspector,
    submitter: TestClient,
    run_id: str,
    launched: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pages, "EDIT_WAIT_SECONDS", 0.2)  # no flow starts here: don't wait for one
    runs, blobs, _ = committed(inspector, run_id)
    job_id = inspector.store.run(run_id).job.id
    form = whole_form() | {"label_2": "happy", "intensity_2": "0.8"}
    response = submitter.post(f"/ui/runs/{run_id}/edit", data=form, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/ui/jobs/{job_id}"  # no run started within the wait
    assert launched == [job_id]
    assert len(set(inspector.store.blobs.iter_shas()) - blobs) == 1  # the edited curve
    assert {r.id for r in inspector.store.job_runs(job_id)} == runs  # the flow (not launched) adds the run


def test_rejected_words_reads_the_failing_edit_from_the_message() -> None:
    # neighbours given the same label and intensity are one span edit: both its words are marked
    sent = {
        "label_0": "happy",
        "label_1": "grumpy",
        "label_2": "grumpy",
        "intensity_1": "0.4",
        "intensity_2": "0.4",
    }
    edits = form_edits(CURVE, whole_form() | sent)
    assert edits[1] == {"start": 1, "stop": 3, "label": "grumpy", "intensity": "0.4"}
    label = ItemError("edit 1.label: unknown emotion 'grumpy'; valid emotions are: neutral", 1, "label")
    assert rejected_words(edits, label, 4) == {1: {"label"}, 2: {"label"}}
    intensity = ItemError("edit 0.intensity: 3.0 is outside 0..1", 0, "intensity")
    assert rejected_words(edits, intensity, 4) == {0: {"intensity"}}
    assert rejected_words(edits, ItemError("edit 9.intensity: 3.0 is outside 0..1", 9, "intensity"), 4) == {}
    span: list[dict[str, Any]] = [{"start": "2", "stop": "9", "label": "sad", "intensity": "0.5"}]
    outside = ItemError("edit 0: words 2..8 are outside the curve's 4 words", 0)
    assert rejected_words(span, outside, 4) == {2: {"label", "intensity"}, 3: {"label", "intensity"}}
    shape = ItemError("edit 0.start: expected a word index (an integer)", 0, "start")
    assert rejected_words([{"start": "x", "stop": "y"}], shape, 4) == {}
    assert rejected_words([], InputError("no edits given: send at least one"), 4) == {}


def test_validation_names_the_failing_edit_and_field() -> None:
    with pytest.raises(ItemError) as caught:
        parse_edits([{"index": 0, "label": "sad", "intensity": 0.5}, {"index": 1, "label": "grumpy"}], 3)
    assert (caught.value.item, caught.value.field) == (1, "label")
    assert "unknown emotion 'grumpy'" in str(caught.value)
    with pytest.raises(ItemError) as caught:
        parse_edits([{"index": 2, "label": "sad", "intensity": "lots"}], 3)
    assert (caught.value.item, caught.value.field) == (0, "intensity")
