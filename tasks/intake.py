"""Submission: validate everything a job needs before anything is written, then record it."""

from __future__ import annotations

import hashlib
import io
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from kernel.canonical import canonical_digest
from kernel.errors import InputError
from kernel.jobs import BUILTIN_PORTRAIT_PREFIX, FRAME_CROP, JobOptions, JobSpec
from kernel.paths import ensure_writable_dir
from kernel.settings import Settings
from models.identity import describe
from models.plan.tags import check_script
from models.vision.face import load_image
from stores.records import NewArtifact
from stores.store import ArtifactStore
from tasks.efp_model import check_efp_model

BUILTIN_PORTRAITS = ("astronaut", "chelsea")
MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "BMP": "image/bmp"}


def submit_job(spec: JobSpec, settings: Settings, store: ArtifactStore, queued: bool = False) -> str:
    """Returns the job id. Bad input raises InputError and leaves only a `job.reject` audit event.

    A `queued` job waits for a drain (`emoflow batch --queue`); otherwise the caller runs it.
    """
    actor = spec.submitter_name()
    try:
        options = spec.options(settings)
        if not spec.script.strip():
            raise InputError("script is empty: give the words to speak in `script` or `script_file`")
        check_script(spec.script)  # its tags and words, as the planner will read them
        if options.renderer == "diffusion":
            check_diffusion_options(options)
        if options.efp_engine == "learned":
            check_efp_model(store, options)
        data, media_type, image = read_portrait(spec.portrait)
        check_portrait(data, image, options, settings)
        ensure_writable_dir(Path(options.output_dir))
    except InputError as exc:
        store.record_event("job.reject", actor, details={"job": spec.name, "error": str(exc)})
        raise
    height, width = image.shape[:2]
    portrait = store.put_artifact(
        NewArtifact(
            "portrait",
            "portrait",
            media_type,
            data=data,
            metadata={"source": spec.portrait, "width": width, "height": height},
        )
    )
    return store.submit_job(
        name=spec.name,
        submitter=actor,
        script=spec.script,
        description=spec.description,
        portrait=portrait,
        options=options.model_dump(),
        queued=queued,
    )


class PortraitCheck:
    """What decides whether a portrait is accepted: the face detector's and the framing's code."""

    name = "portrait-check"
    version = "1"

    def identity_digest(self, portrait: bytes, options: JobOptions) -> str:
        identity = describe(
            self, modules=("models.vision.face", "models.render.framing"), packages=("mediapipe",)
        )
        return canonical_digest(
            {
                "checker": identity.to_dict(),
                "portrait": hashlib.sha256(portrait).hexdigest(),
                "options": {name: getattr(options, name) for name in PORTRAIT_OPTIONS},
            }
        )


PORTRAIT_OPTIONS = ("size", "face_index", "allow_non_human", "frame")


def check_portrait(data: bytes, image: np.ndarray, options: JobOptions, settings: Settings) -> None:
    """Prove there is a usable human face, and room to frame it, now, not minutes later in render.

    An acceptance is remembered under EMOFLOW_HOME by the portrait's bytes, the options that frame it
    and the checking code, so re-submitting a job does not run face detection again (~0.7 s).
    Refusals are not remembered: they are rare, and their message is worth recomputing.
    """
    key = PortraitCheck().identity_digest(data, options)
    accepted = settings.home_dir / "cache" / "portraits-accepted" / key
    if accepted.exists():
        return
    # imported here: the renderer's modules cost a process that finds the portrait accepted ~0.5 s
    from models.render.framing import output_region
    from models.vision.face import prepare_portrait

    face = prepare_portrait(image, options.size, options.face_index, options.allow_non_human)
    if options.frame != FRAME_CROP:
        output_region(face, options.frame)
    try:
        accepted.parent.mkdir(parents=True, exist_ok=True)
        accepted.touch()
    except OSError:  # only slower next time
        pass


def read_portrait(source: str) -> tuple[bytes, str, np.ndarray]:
    """(file bytes, sniffed media type, RGB pixels) of a portrait path or built-in name."""
    if source.startswith(BUILTIN_PORTRAIT_PREFIX):
        name = source.removeprefix(BUILTIN_PORTRAIT_PREFIX)
        if name not in BUILTIN_PORTRAITS:
            raise InputError(
                f"unknown built-in portrait {source!r}; choose skimage:astronaut or skimage:chelsea"
            )
        data, image = _builtin_png(name)
        return data, "image/png", image.copy()  # a copy: the caller may draw on its pixels
    path = Path(source)
    image = load_image(path)  # raises InputError for missing or unreadable files
    data = path.read_bytes()
    # trust the bytes, not the file name
    with Image.open(io.BytesIO(data)) as opened:
        media_type = MEDIA_TYPES.get(opened.format or "", "application/octet-stream")
    return data, media_type, image


@lru_cache(maxsize=len(BUILTIN_PORTRAITS))
def _builtin_png(name: str) -> tuple[bytes, np.ndarray]:
    """A built-in portrait as PNG bytes, encoded once per process (~90 ms each: a manifest's rows
    often share one)."""
    image = builtin_portrait(name)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue(), image


def builtin_portrait(name: str) -> np.ndarray:
    """scikit-image's bundled photo `name`, read with Pillow: `skimage.data.<name>()` reads the same file
    through skimage.io, which imports SciPy (0.4 s of a cached narration). The pixels are the same
    (tests/flows/test_fast_path.py compares them), so the stored portrait and every key after it are too."""
    import skimage.data

    bundled = Path(skimage.data.__file__).parent / f"{name}.png"
    if not bundled.is_file():  # a scikit-image that fetches its data: its own loader knows where
        image: np.ndarray = getattr(skimage.data, name)()
        return image
    with Image.open(bundled) as opened:
        return np.asarray(opened.convert("RGB"))


def check_diffusion_options(options: JobOptions) -> None:
    """Refuse, before anything runs, a diffusion job whose weights folder the renderer cannot load."""
    if not options.weights:
        raise InputError(
            "the diffusion renderer needs weights: pass --weights DIR (or set EMOFLOW_DIFFUSION_WEIGHTS), "
            "a folder laid out as Hallo's pretrained_models/ (docs/diffusion.md)"
        )
    if options.size % 64:
        raise InputError(f"the diffusion renderer needs a size that is a multiple of 64, got {options.size}")
    from models.render.diffusion.weights import check_weights

    report = check_weights(options.weights)
    if not report.ok:
        raise InputError(f"diffusion weights {options.weights}: " + "; ".join(report.problems()))
