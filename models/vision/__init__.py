"""Portrait intake: load an image, find the face, crop it square and put a MediaPipe face mesh on it."""

from models.vision.face import (
    FaceBox,
    Portrait,
    detect_faces,
    detect_landmarks,
    load_image,
    prepare_portrait,
)

__all__ = ["FaceBox", "Portrait", "detect_faces", "detect_landmarks", "load_image", "prepare_portrait"]
