"""What the web layer accepts. Module constants are the defaults; `create_app` takes overrides."""

from __future__ import annotations

from dataclasses import dataclass

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # one portrait
MAX_REQUEST_BYTES = MAX_UPLOAD_BYTES + 256 * 1024  # the portrait plus script, description, options
MAX_PIXELS = 40_000_000  # decoded size; bigger photos gain nothing at render sizes <= 2048
MAX_SCRIPT_CHARS = 20_000
IMAGE_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}  # sniffed format -> file suffix


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_request_bytes: int = MAX_REQUEST_BYTES
    max_pixels: int = MAX_PIXELS
    max_script_chars: int = MAX_SCRIPT_CHARS
