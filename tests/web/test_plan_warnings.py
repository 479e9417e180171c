"""Issue #17: the run page shows how the brief was read (the plan's readings) and every plan
warning, near the top and unfolded. The runs are recorded straight into the store: no flow runs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stores.records import NewArtifact
from tests.web.conftest import Inspector

DESCRIPTION = "creepy for the storm part, then <b>blorp</b> & calm"
WARNINGS = [
    'could not read "<b>blorp</b> & calm" as an emotion; those words stay neutral',
    'contradiction: "creepy" asks for fear and "calm" asks for neutral on the same words ("the storm")',
]
READINGS: list[dict[str, Any]] = [
    {
        "phrase": "creepy for the storm part",
        "label": "fear",
        "intensity": 0.6,
        "how": 'lexicon "creepy"',
        "where": 'sentences 2-3, matched "the storm part"',
        "words": 18,
    },
    {
        "phrase": "eerie calm",
        "label": "surprise",
        "intensity": 0.4,
        "how": '"eerie" by similarity 0.71 (confidence 0.64)',
        "where": "nowhere",
        "words": 0,
    },
]


def record_planned_run(store: Any, name: str, description: str, metadata: dict[str, Any]) -> str:
    """A finished run whose plan artifact carries `metadata`, through the store's public API."""
    portrait = store.put_artifact(NewArtifact("portrait", "portrait", "image/png", data=b"not drawn"))
    job_id = store.submit_job(
        name=name, submitter="alice", script="Hi.", description=description, portrait=portrait, options={}
    )
    run = store.start_run(job_id, None)
    step = store.begin_step(
        run_id=run,
        stage="plan",
        engine="rules",
        engine_version="1",
        params={},
        cache_key=name.encode().hex().ljust(64, "0")[:64],
        inputs={"portrait": portrait},
    )
    document = {"script": "Hi.", "words": [], **metadata}
    data = json.dumps(document, sort_keys=True).encode()
    store.commit_step(step, [NewArtifact("plan", "plan", "application/json", data=data, metadata=metadata)])
    store.finish_run(run)
    return run


@pytest.fixture(scope="module")
def runs(inspector: Inspector) -> dict[str, str]:
    store = inspector.store
    return {
        "read": record_planned_run(
            store, "read", DESCRIPTION, {"words": 3, "warnings": WARNINGS, "readings": READINGS}
        ),
        # planned before readings were recorded: warnings only
        "old": record_planned_run(store, "old", DESCRIPTION, {"words": 3, "warnings": WARNINGS[:1]}),
        "unread": record_planned_run(store, "unread", "blorp", {"words": 3, "warnings": [], "readings": []}),
        "clean": record_planned_run(
            store, "clean", "creepy", {"words": 3, "warnings": [], "readings": READINGS[:1]}
        ),
    }


def page(inspector: Inspector, run_id: str) -> str:
    browser = inspector.browser()
    browser.post("/ui/login", data={"token": inspector.viewer_secret})
    response = browser.get(f"/ui/runs/{run_id}")
    assert response.status_code == 200
    return response.text


def test_the_run_page_shows_readings_and_warnings_near_the_top(
    inspector: Inspector, runs: dict[str, str]
) -> None:
    text = page(inspector, runs["read"])
    panel = text.index('<section class="plan-reading" id="plan">')
    assert panel < text.index("<h2>Stages</h2>")  # before everything else on the page
    assert "2 plan warnings</span></h2>" in text
    # the summary at the top says so, before the panel
    assert text.index("The plan has 2 warnings") < panel
    section = text[panel : text.index("</section>", panel)]
    assert "<details" not in section  # shown, not folded
    assert "<td><q>creepy for the storm part</q></td>" in section
    assert "fear</td>" in section and "0.60" in section and "18</td>" in section
    assert "lexicon &#34;creepy&#34;" in section
    assert "sentences 2-3, matched &#34;the storm part&#34;" in section
    assert 'class="placed-nowhere"' in section  # the reading that holds no words
    assert section.count('<li class="warning">') == 2
    assert "contradiction: &#34;creepy&#34; asks for fear" in section


def test_warnings_and_the_description_are_escaped(inspector: Inspector, runs: dict[str, str]) -> None:
    text = page(inspector, runs["read"])
    assert "<b>blorp</b>" not in text
    assert "could not read &#34;&lt;b&gt;blorp&lt;/b&gt; &amp; calm&#34; as an emotion" in text
    assert "<q>creepy for the storm part, then &lt;b&gt;blorp&lt;/b&gt; &amp; calm</q>" in text


def test_an_old_plan_without_readings_shows_its_warnings(inspector: Inspector, runs: dict[str, str]) -> None:
    text = page(inspector, runs["old"])
    assert "1 plan warning</span></h2>" in text and "The plan has 1 warning:" in text
    assert "planned before readings were recorded" in text
    assert '<table class="table readings">' not in text
    assert text.count('<li class="warning">') == 1


def test_a_description_read_as_nothing_is_said_plainly(inspector: Inspector, runs: dict[str, str]) -> None:
    text = page(inspector, runs["unread"])
    assert "No part of the description was read as an emotion" in text
    assert "plan warning" not in text and "The plan has" not in text


def test_a_clean_plan_has_no_warning_banner(inspector: Inspector, runs: dict[str, str]) -> None:
    text = page(inspector, runs["clean"])
    assert "<td><q>creepy for the storm part</q></td>" in text
    assert "plan warning" not in text and 'class="warning"' not in text


def test_a_plan_with_empty_metadata_still_renders(inspector: Inspector) -> None:
    """Runs recorded before plans carried metadata at all (tests/web/test_run_page.py records one)."""
    run_id = record_planned_run(inspector.store, "bare", "", {})
    text = page(inspector, run_id)
    assert "How the brief was read" in text and "planned before readings were recorded" in text
