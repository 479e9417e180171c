"""Stage 5, render: the portrait speaks, its expression following the curve; frames as silent H.264."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from kernel.settings import get_settings
from models.publish.video import encode_frames
from models.types import ProgressFn
from models.vision.face import load_image, prepare_portrait
from stores.records import ArtifactRef, NewArtifact
from tasks.artifacts import load_curve, load_speech
from tasks.context import open_store
from tasks.engines import engine_class
from tasks.stage import retry_transient, run_stage


@task(
    name="render",
    retries=get_settings().task_retries,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def render_face(
    run_id: str, speech: ArtifactRef, word_timings: ArtifactRef, curve: ArtifactRef
) -> dict[str, ArtifactRef]:
    store = open_store()
    job = store.run(run_id).job
    renderer, params = build_renderer(job.options)
    portrait = store.artifact(job.portrait_sha256, kind="portrait")

    def compute(workdir: Path, progress: ProgressFn) -> list[NewArtifact]:
        face = prepare_portrait(
            load_image(store.blob_path(portrait.sha256)), params["size"], params["face_index"]
        )
        loaded = load_speech(store, speech, word_timings)
        total = renderer.frame_count(loaded.duration)
        frames = renderer.render(face, loaded, load_curve(store, curve))
        path = workdir / "frames.mp4"
        count = encode_frames(frames, path, params["fps"], params["size"], total, progress)
        return [
            NewArtifact(
                name="frames",
                kind="frames",
                media_type="video/mp4",
                path=path,
                metadata={"frames": count, "fps": params["fps"], "size": params["size"]},
            )
        ]

    return run_stage(
        store,
        run_id=run_id,
        stage="render",
        engine=renderer.name,
        engine_version=renderer.version,
        params=params,
        inputs={"portrait": portrait, "speech": speech, "word_timings": word_timings, "curve": curve},
        compute=compute,
    )


def build_renderer(options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The job's renderer and the parameters that go into its cache key (weights by hash)."""
    name = options["renderer"]
    params = {k: options[k] for k in ("size", "fps", "seed", "face_index")}
    if name != "diffusion":
        params["head_motion"] = options["head_motion"]
        renderer = engine_class("renderer", name)(
            size=params["size"], fps=params["fps"], seed=params["seed"], head_motion=params["head_motion"]
        )
        return renderer, params
    from models.render.diffusion import hash_weights_dir

    params.update({k: options[k] for k in ("steps", "guidance", "device")})
    weights = options["weights"]
    # memoised per file sizes and mtimes: changed weights get a new cache key and a fresh load
    local_sha256 = hash_weights_dir(weights) if Path(weights).is_dir() else None
    settings = {k: v for k, v in params.items() if k != "face_index"}
    renderer = _diffusion_renderer(weights, local_sha256, **settings)
    params["weights_sha256"] = renderer.weights_sha256
    return renderer, params


@lru_cache(maxsize=2)
def _diffusion_renderer(weights: str, _weights_sha256: str | None, **settings: Any) -> Any:
    # loading the pipeline is the expensive part: keep it for the next job with the same weights
    return engine_class("renderer", "diffusion")(weights, **settings)


def tagged_render_task() -> Any:
    """The render task carrying EMOFLOW_RENDER_TAGS, so Prefect concurrency limits can throttle it.

    Tags are opt-in: with any tag, Prefect asks its server for concurrency slots on every render,
    and its slot service costs about 2 s whenever it restarts after a few idle seconds.
    """
    tags = {tag.strip() for tag in get_settings().render_tags.split(",") if tag.strip()}
    return render_face.with_options(tags=tags) if tags else render_face
