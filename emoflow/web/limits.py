"""What the web layer accepts. Module constants are the defaults; `create_app` takes overrides.

Script length and portrait pixels are the job limits of kernel/jobs.py, the same for the CLI and
batch manifests; only the upload and request sizes are the web's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from kernel.jobs import MAX_DESCRIPTION_CHARS, MAX_PORTRAIT_PIXELS, MAX_SCRIPT_CHARS

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # one portrait
# the portrait plus script and description (up to 4 bytes a character in UTF-8) and the options
MAX_REQUEST_BYTES = MAX_UPLOAD_BYTES + 4 * (MAX_SCRIPT_CHARS + MAX_DESCRIPTION_CHARS) + 64 * 1024
MAX_PIXELS = MAX_PORTRAIT_PIXELS
IMAGE_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}  # sniffed format -> file suffix


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_request_bytes: int = MAX_REQUEST_BYTES
    max_pixels: int = MAX_PIXELS
    max_script_chars: int = MAX_SCRIPT_CHARS
