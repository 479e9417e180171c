"""The train-efp flow: trains on a synthetic clip set, registers the model, and `feel` uses it by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.narrate import narrate
from flows.train_efp import main, train_efp
from kernel.errors import InputError
from kernel.jobs import parse_job
from kernel.settings import get_settings
from models.efp.learned import load_model
from tasks.context import open_store
from tasks.efp_model import MODEL_KIND, find_model
from tasks.intake import submit_job
from tests.models.test_efp_learned import make_clip_set


@pytest.mark.parametrize("emoflow_home", ["sqlite"], indirect=True)  # not about the database
def test_trained_model_is_registered_and_feel_uses_it_by_name(
    prefect_api: str, emoflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    clip_set = make_clip_set(tmp_path / "clips", per_label=2, speakers=("s1", "s2"))
    result = train_efp(str(clip_set), "tones", epochs=4)

    store = open_store()
    ref = store.artifact(result.model_sha256, kind=MODEL_KIND)
    meta = ref.metadata
    assert meta["name"] == "tones" and meta["features"]["features"] == "embedded" and meta["text"] is True
    assert meta["normalise"] == "speaker"
    assert meta["clip_set_sha256"] == result.clip_set_sha256 and len(result.clip_set_sha256) == 64
    assert meta["clips"] == 8 and meta["speakers"] == ["s1", "s2"] and "happy" in meta["labels"]
    assert meta["metrics"]["val_speakers"] and min(meta["metrics"]["best_epochs"]) >= 1
    assert any(e.action == "efp.train" and e.details["name"] == "tones" for e in store.audit_events())
    model = load_model(store.blob_path(ref.sha256))
    assert find_model(store, "tones").sha256 == ref.sha256
    assert find_model(store, ref.sha256[:10]).sha256 == ref.sha256
    with pytest.raises(InputError, match="no EFP model named 'nope'"):
        find_model(store, "nope")

    # a narration with the learned EFP, the model given by name
    monkeypatch.setenv("EMOFLOW_EFP_MODEL", "tones")
    get_settings.cache_clear()
    spec = parse_job(
        {
            "name": "learned",
            "script": "Hello there. This is fine.",
            "portrait": "skimage:astronaut",
            "size": 64,
            "tts_engine": "espeak",
            "efp_engine": "learned",
        },
        tmp_path,
    )
    run = narrate(submit_job(spec, get_settings(), store))
    (feel,) = [s for s in store.run(run.run_id).steps if s.stage == "feel"]
    assert feel.engine == "learned" and feel.engine_version.endswith(model.content_hash[:16])
    curve = json.loads(store.read_bytes(feel.outputs["curve"].sha256))
    assert curve["engine"] == f"learned@{feel.engine_version}" and curve["points"]
    assert all(set(p["sources"]) == {"model", "audio", "text"} for p in curve["points"])

    # retrained under the same name: the newest model wins, and the feel step is not reused
    newer = train_efp(str(clip_set), "tones", epochs=4, seed=1)
    assert newer.model_sha256 != result.model_sha256
    again = narrate(submit_job(spec, get_settings(), store))
    (feel_again,) = [s for s in store.run(again.run_id).steps if s.stage == "feel"]
    assert not feel_again.cache_hit and feel_again.engine_version != feel.engine_version
    get_settings.cache_clear()


@pytest.mark.parametrize("emoflow_home", ["sqlite"], indirect=True)
def test_cli_refuses_an_empty_clip_set(prefect_api: str, emoflow_home: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "clips.jsonl").write_text("")
    with pytest.raises(InputError, match="holds no clips"):
        main([str(tmp_path / "empty"), "--name", "x"])
