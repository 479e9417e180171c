"""The DTW aligner chosen by a job file runs as the align stage and keeps every word in order."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from flows.narrate import submit_and_narrate
from kernel.jobs import parse_job
from tasks.context import open_store


@pytest.mark.parametrize("emoflow_home", ["sqlite"], indirect=True)  # not about the database
def test_dtw_aligner_in_the_flow(prefect_api: str, emoflow_home: Path, tmp_path: Path) -> None:
    spec = parse_job(
        {"script": "The harbour was quiet that morning.", "portrait": "skimage:astronaut", "size": 128,
         "aligner": "dtw"},
        tmp_path,
    )  # fmt: skip
    result = submit_and_narrate(spec)
    store = open_store()
    align = next(s for s in store.run(result.run_id).steps if s.stage == "align")
    assert align.engine == "dtw"
    words = json.loads(store.read_bytes(align.outputs["word_timings"].sha256))["words"]
    assert [w["text"] for w in words] == ["The", "harbour", "was", "quiet", "that", "morning"]
    assert all(a["end"] <= b["start"] + 1e-6 for a, b in itertools.pairwise(words))
    assert words[-1]["end"] > words[0]["start"]
