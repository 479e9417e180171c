"""Typed reads and writes of stage artifacts: JSON documents, WAV speech, images."""

from __future__ import annotations

import json
from typing import Any

from models.audio import read_wav
from models.types import EmotionCurve, EmotionPlan, Speech, Timings
from stores.records import ArtifactRef, NewArtifact
from stores.store import ArtifactStore

JSON = "application/json"


def json_artifact(name: str, kind: str, document: dict[str, Any], **metadata: Any) -> NewArtifact:
    data = json.dumps(document, ensure_ascii=False, indent=1, sort_keys=True).encode("utf-8")
    return NewArtifact(name=name, kind=kind, media_type=JSON, data=data, metadata=metadata)


def read_json(store: ArtifactStore, ref: ArtifactRef) -> dict[str, Any]:
    return json.loads(store.read_bytes(ref.sha256))


def load_plan(store: ArtifactStore, ref: ArtifactRef) -> EmotionPlan:
    return EmotionPlan.from_dict(read_json(store, ref))


def load_timings(store: ArtifactStore, ref: ArtifactRef) -> Timings:
    return Timings.from_dict(read_json(store, ref))


def load_curve(store: ArtifactStore, ref: ArtifactRef) -> EmotionCurve:
    return EmotionCurve.from_dict(read_json(store, ref))


def load_speech(store: ArtifactStore, audio: ArtifactRef, timings: ArtifactRef) -> Speech:
    samples, sample_rate = read_wav(store.read_bytes(audio.sha256))
    return Speech(samples=samples, sample_rate=sample_rate, timings=load_timings(store, timings))


def read_text(store: ArtifactStore, ref: ArtifactRef) -> str:
    return store.read_bytes(ref.sha256).decode("utf-8")
