"""Stage 5, render: the portrait speaks, its expression following the curve; frames as silent H.264.

Renderers animate the square face crop; the job's `frame` option then pastes each frame back into the whole
portrait (`models/render/framing.py`), the same way for every renderer.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from kernel.jobs import JobOptions
from kernel.settings import get_settings
from models.publish.video import encode_frames
from models.render.framing import framer_for
from models.types import ProgressFn
from models.vision.face import load_image, prepare_portrait
from stores.records import ArtifactRef, NewArtifact
from tasks.artifacts import load_curve, load_speech
from tasks.context import open_store
from tasks.engines import engine_class
from tasks.stage import run_stage, stage_task
from tasks.stages import RENDER, Rendered, render_parameters


@stage_task(RENDER)
def render_face(
    run_id: str,
    portrait: ArtifactRef,
    speech: ArtifactRef,
    word_timings: ArtifactRef,
    curve: ArtifactRef,
    options: JobOptions,
) -> Rendered:
    store = open_store()
    renderer, params = build_renderer(options)

    def compute(workdir: Path, progress: ProgressFn) -> list[NewArtifact]:
        face = prepare_portrait(
            load_image(store.blob_path(portrait.sha256)),
            options.size,
            options.face_index,
            allow_non_human=options.allow_non_human,
        )
        framer = framer_for(face, options.frame)  # before rendering: a frame that cannot fit fails now
        loaded = load_speech(store, speech, word_timings)
        total = renderer.frame_count(loaded.duration)
        frames = renderer.render(face, loaded, load_curve(store, curve))
        width, height = (options.size, options.size) if framer is None else framer.size
        if framer is not None:
            frames = framer.frames(frames)
        path = workdir / "frames.mp4"
        count = encode_frames(frames, path, options.fps, (width, height), total, progress)
        metadata: dict[str, Any] = {"frames": count, "fps": options.fps, "size": options.size}
        metadata |= {"frame": options.frame, "width": width, "height": height}
        return [NewArtifact("frames", "frames", "video/mp4", path=path, metadata=metadata)]

    return run_stage(
        store,
        RENDER,
        run_id=run_id,
        engine=renderer,
        params=params,
        inputs={"portrait": portrait, "speech": speech, "word_timings": word_timings, "curve": curve},
        compute=compute,
        options=options,
    )


def build_renderer(options: JobOptions) -> tuple[Any, dict[str, Any]]:
    """The job's renderer and the parameters that go into its cache key (weights by hash)."""
    if options.renderer != "diffusion":
        params = render_parameters(options)
        renderer = engine_class("renderer", options.renderer)(
            size=options.size, fps=options.fps, seed=options.seed, head_motion=options.head_motion
        )
        return renderer, params
    from models.render.diffusion import hash_weights_dir

    weights = str(options.weights)
    # memoised per file sizes and mtimes: changed weights get a new cache key and a fresh load
    local_sha256 = hash_weights_dir(weights) if Path(weights).is_dir() else None
    settings: dict[str, Any] = {"size": options.size, "fps": options.fps, "seed": options.seed}
    settings |= {"steps": options.steps, "guidance": options.guidance, "device": options.device}
    renderer = _diffusion_renderer(weights, local_sha256, **settings)
    params = RENDER.parameters(options, **settings, weights_sha256=renderer.weights_sha256)
    return renderer, params


@lru_cache(maxsize=2)
def _diffusion_renderer(weights: str, _weights_sha256: str | None, **settings: Any) -> Any:
    # loading the pipeline is the expensive part: keep it for the next job with the same weights
    return engine_class("renderer", "diffusion")(weights, **settings)


def render_task() -> Any:
    """The render task carrying EMOFLOW_RENDER_TAGS, so Prefect concurrency limits can throttle it.

    Tags are opt-in: with any tag, Prefect asks its server for concurrency slots on every render,
    and its slot service costs about 2 s whenever it restarts after a few idle seconds.
    """
    tags = {tag.strip() for tag in get_settings().render_tags.split(",") if tag.strip()}
    return render_face.with_options(tags=tags) if tags else render_face
