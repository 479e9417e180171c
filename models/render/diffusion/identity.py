"""The face-identity vector Hallo's image projection reads: InsightFace's 512-d ArcFace embedding.

    embedder = load_embedder(Path("pretrained_models/face_analysis"))   # or embedding_file=face.npy
    vector = embedder.embed(portrait.image)                              # float32 [512]
    embedder.last_found                                                  # False: no face, zeros

As Hallo's `ImageProcessor`: InsightFace's FaceAnalysis over the ONNX models in `<root>/models/`
(detection at 640x640), the largest face by box area, its raw (not normalised) embedding; zeros when no
face is found. Hallo goes on silently there; here `embed` logs a warning and sets `last_found`, and
`InsightFaceEmbedder.analyse` returns the verdict with the vector. Where InsightFace cannot be installed,
a vector computed elsewhere can be given as a `.npy` file (`PrecomputedEmbedding`).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from kernel.errors import EngineError, InputError

log = logging.getLogger(__name__)

EMBEDDING_DIM = 512
HALLO_WEIGHTS = "https://huggingface.co/fudan-generative-ai/hallo"  # folder face_analysis/models/
# Hallo's face_analysis/models/ folder as its README lists it; the .task file is MediaPipe's landmarker
# (Hallo's masks; ours come from our own face mesh), and 1k3d68, 2d106det and genderage are InsightFace
# models whose outputs the embedding never reads.
HALLO_FACE_ANALYSIS_FILES = (
    "1k3d68.onnx",
    "2d106det.onnx",
    "face_landmarker_v2_with_blendshapes.task",
    "genderage.onnx",
    "glintr100.onnx",
    "scrfd_10g_bnkps.onnx",
)
# What the embedding needs: the SCRFD detector (box and five points to align the crop) and the
# ArcFace recogniser (glint360k, ResNet-100).
REQUIRED_FILES = ("scrfd_10g_bnkps.onnx", "glintr100.onnx")
_MODULES = ["detection", "recognition"]
DETECT_SIZE = (640, 640)
DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")  # onnxruntime skips the absent


class FaceEmbedder(Protocol):
    """A source of Hallo's identity vector for a portrait."""

    name: str
    last_found: bool  # whether the last `embed` found a face (False: the vector is Hallo's zeros)

    def embed(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 [H, W, 3] -> float32 [512]."""
        ...

    def identity_files(self) -> list[Path]:
        """Files whose content changes the output (for cache keys)."""
        ...


@dataclass(frozen=True)
class FaceEmbedding:
    """One portrait's identity vector, whether a face was found, and the face's box (x0, y0, x1, y1)."""

    vector: np.ndarray  # float32 [512]; zeros when no face was found, as Hallo
    found: bool
    box: tuple[float, float, float, float] | None = None


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", type(image).__name__)
        dtype = getattr(image, "dtype", "")
        raise InputError(f"the portrait must be an RGB uint8 array [H, W, 3], got {shape} {dtype}".rstrip())
    if min(image.shape[:2]) < 1:
        raise InputError(f"the portrait is empty: {image.shape}")


def _check_vector(vector: np.ndarray, source: str) -> np.ndarray:
    if vector.shape != (EMBEDDING_DIM,):
        raise InputError(
            f"{source} must hold one {EMBEDDING_DIM}-d face embedding (shape ({EMBEDDING_DIM},)), "
            f"got shape {vector.shape}"
        )
    if not np.issubdtype(vector.dtype, np.number) or np.issubdtype(vector.dtype, np.complexfloating):
        raise InputError(f"{source} must hold real numbers, got dtype {vector.dtype}")
    if not np.isfinite(vector).all():
        raise InputError(f"{source} contains NaN or infinite values; compute the embedding again")
    return vector.astype(np.float32)


def face_analysis_files(root: Path) -> list[Path]:
    """The required model files under `root/models/`, or EngineError naming the first one missing."""
    models = Path(root) / "models"
    fetch = f"download Hallo's face_analysis/models/ folder from {HALLO_WEIGHTS} into {models}"
    if not Path(root).is_dir():
        raise EngineError(f"face-analysis folder {root} does not exist: {fetch}")
    if not models.is_dir() and (Path(root) / REQUIRED_FILES[0]).is_file():
        raise EngineError(
            f"{root} holds the model files itself; give its parent folder (the one that holds models/)"
        )
    for name in REQUIRED_FILES:
        if not (models / name).is_file():
            raise EngineError(f"face-analysis model {models / name} is missing: {fetch}")
    return [models / name for name in REQUIRED_FILES]


class InsightFaceEmbedder:
    """InsightFace's FaceAnalysis over Hallo's face_analysis models, as Hallo's ImageProcessor runs it."""

    name = "insightface"

    def __init__(self, root: Path, providers: Sequence[str] = DEFAULT_PROVIDERS) -> None:
        """`root` holds `models/` with the ONNX files (Hallo's pretrained_models/face_analysis)."""
        self.root = Path(root)
        face_analysis_files(self.root)
        try:
            app_module: Any = importlib.import_module("insightface.app")
        except ImportError as error:
            raise EngineError(
                f"InsightFace is not installed ({error}): pip install insightface onnxruntime "
                f"(onnxruntime-gpu for CUDA); it reads {', '.join(REQUIRED_FILES)} from "
                f"{self.root / 'models'}, Hallo's face_analysis/models/ on {HALLO_WEIGHTS}"
            ) from error
        # name="" makes FaceAnalysis read root/models/ itself; only the two models the embedding uses
        # are kept (the others would only add outputs the embedding ignores)
        self._app: Any = app_module.FaceAnalysis(
            name="", root=str(self.root), providers=list(providers), allowed_modules=_MODULES
        )
        missing = [module for module in _MODULES if module not in self._app.models]
        if missing:
            raise EngineError(
                f"InsightFace found no {' or '.join(missing)} model in {self.root / 'models'}; "
                f"the files may be damaged: download {', '.join(REQUIRED_FILES)} again from {HALLO_WEIGHTS}"
            )
        self._app.prepare(ctx_id=0, det_size=DETECT_SIZE)
        self.last_found = False

    def analyse(self, image: np.ndarray) -> FaceEmbedding:
        """The largest face's embedding, or Hallo's zeros with found=False when there is no face."""
        _check_image(image)
        faces = self._app.get(np.ascontiguousarray(image[..., ::-1]))  # InsightFace reads BGR
        if not faces:
            return FaceEmbedding(np.zeros(EMBEDDING_DIM, np.float32), found=False)

        def area(face: Any) -> float:
            x0, y0, x1, y1 = (float(v) for v in face.bbox)
            return (x1 - x0) * (y1 - y0)

        face = max(faces, key=area)  # the first of equal largest, as Hallo's stable sort
        vector = np.asarray(face.embedding, dtype=np.float32)
        if vector.shape != (EMBEDDING_DIM,):
            raise EngineError(
                f"the recognition model gave a {vector.shape} embedding, not ({EMBEDDING_DIM},): "
                f"{self.root / 'models'} must hold Hallo's glintr100.onnx"
            )
        x0, y0, x1, y1 = (float(v) for v in face.bbox)
        return FaceEmbedding(vector, found=True, box=(x0, y0, x1, y1))

    def embed(self, image: np.ndarray) -> np.ndarray:
        result = self.analyse(image)
        self.last_found = result.found
        if not result.found:
            log.warning("no face found by InsightFace: using Hallo's all-zero identity vector")
        return result.vector

    def identity_files(self) -> list[Path]:
        # FaceAnalysis loads every ONNX file there and keeps the first detector and recogniser it meets,
        # so any of them could decide the output
        return sorted((self.root / "models").glob("*.onnx"))


class PrecomputedEmbedding:
    """A fixed identity vector, e.g. computed with InsightFace on another machine and saved with np.save."""

    name = "precomputed"

    def __init__(self, vector: np.ndarray, source: Path | None = None) -> None:
        self.vector = _check_vector(np.asarray(vector), str(source) if source else "the face embedding")
        self.source = source
        self.last_found = True

    @classmethod
    def from_file(cls, path: Path) -> PrecomputedEmbedding:
        """Load a `.npy` file holding one float vector of shape (512,)."""
        path = Path(path)
        if not path.is_file():
            raise InputError(
                f"face embedding file {path} does not exist: give a .npy file saved with np.save"
            )
        try:
            vector = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise InputError(
                f"face embedding file {path} is not a readable .npy array ({error}): save it with np.save"
            ) from error
        return cls(vector, source=path)

    def embed(self, image: np.ndarray) -> np.ndarray:
        """The stored vector, whatever the image (which is still checked, to fail as the other would)."""
        _check_image(image)
        return self.vector.copy()

    def identity_files(self) -> list[Path]:
        return [self.source] if self.source is not None else []


def load_embedder(face_analysis_dir: Path | None, embedding_file: Path | None = None) -> FaceEmbedder:
    """A precomputed vector when `embedding_file` is given (it wins), else InsightFace over the folder."""
    if embedding_file is not None:
        return PrecomputedEmbedding.from_file(embedding_file)
    if face_analysis_dir is None:
        raise EngineError(
            "no face-identity source: give the face-analysis folder (Hallo's pretrained_models/"
            f"face_analysis, from {HALLO_WEIGHTS}) or a precomputed 512-d embedding as a .npy file"
        )
    return InsightFaceEmbedder(face_analysis_dir)
