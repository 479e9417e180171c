"""The model registry: names (per kind, versioned) for stored model artifacts."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from kernel.errors import InputError, StoreError
from stores.records import ArtifactRef, NewArtifact
from stores.store import ArtifactStore


def model(store: ArtifactStore, data: bytes) -> ArtifactRef:
    return store.put_artifact(NewArtifact("m", "efp-model", "application/vnd.safetensors", data=data))


def test_a_name_means_its_newest_registration(store: ArtifactStore) -> None:
    old, new = model(store, b"old"), model(store, b"new")
    first = store.register_model("efp", "tones", old, metadata={"epochs": 4}, actor="ann")
    second = store.register_model("efp", "tones", new, actor="bob")

    found = store.find_model("efp", "tones")
    assert found is not None and found.id == second.id
    assert (first.version, second.version) == (1, 2)
    assert found.sha256 == new.sha256 and found.artifact == new and found.actor == "bob"
    assert first.metadata == {"epochs": 4} and first.kind == "efp" and first.name == "tones"


def test_two_names_for_one_artifact_and_kinds_are_separate(store: ArtifactStore) -> None:
    ref = model(store, b"weights")
    store.register_model("efp", "a", ref)
    store.register_model("efp", "b", ref)
    a, b = store.find_model("efp", "a"), store.find_model("efp", "b")
    assert a is not None and b is not None and a.sha256 == b.sha256 == ref.sha256
    assert a.version == b.version == 1
    assert store.find_model("renderer", "a") is None


def test_unknown_name_is_none(store: ArtifactStore) -> None:
    assert store.find_model("efp", "nope") is None
    assert store.list_models() == []


def test_list_models_is_newest_first_and_filters_by_kind(store: ArtifactStore) -> None:
    ref = model(store, b"w")
    weights = store.put_artifact(NewArtifact("w", "renderer-weights", "application/octet-stream", data=b"r"))
    store.register_model("efp", "a", ref)
    store.register_model("renderer", "renderer", weights)
    store.register_model("efp", "a", ref)
    assert [(m.kind, m.name, m.version) for m in store.list_models()] == [
        ("efp", "a", 2),
        ("renderer", "renderer", 1),
        ("efp", "a", 1),
    ]
    assert [m.kind for m in store.list_models(kind="renderer")] == ["renderer"]


def test_registration_is_audited_and_needs_a_stored_artifact(store: ArtifactStore) -> None:
    ref = model(store, b"w")
    store.register_model("efp", "tones", ref, actor="ann")
    event = store.audit_events()[-1]
    assert event.action == "model.register" and event.actor == "ann"
    assert event.details == {"kind": "efp", "name": "tones", "version": 1, "sha256": ref.sha256}

    missing = ArtifactRef("f" * 64, "efp-model", "application/octet-stream", 1, "file:///x", {})
    with pytest.raises(StoreError, match="no efp-model artifact"):
        store.register_model("efp", "ghost", missing)
    with pytest.raises(InputError, match="non-empty name"):
        store.register_model("efp", "  ", ref)
    assert store.find_model("efp", "ghost") is None


def test_concurrent_registrations_under_one_name_get_distinct_versions(store: ArtifactStore) -> None:
    refs = [model(store, f"w{i}".encode()) for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        records = list(pool.map(lambda ref: store.register_model("efp", "tones", ref), refs))
    assert sorted(r.version for r in records) == list(range(1, 9))
    newest = max(records, key=lambda r: r.version)
    found = store.find_model("efp", "tones")
    assert found is not None and found.id == newest.id
