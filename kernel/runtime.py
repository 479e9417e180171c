"""Process environment that must be set before Prefect or Hugging Face libraries are imported."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from kernel.settings import get_settings


def configure_environment() -> None:
    """Keep Prefect's state under EMOFLOW_HOME, telemetry off, model hubs offline. Idempotent."""
    settings = get_settings()
    defaults = {
        "PREFECT_HOME": str(settings.prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        # a new ephemeral database takes 13-16 s to start here; the default 20 s timed out once
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
    # Prefect creates PREFECT_HOME itself but not its parents, and warns instead of failing
    with contextlib.suppress(OSError):
        Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)


def host_name() -> str:
    """This machine's name in leases and the audit trail: EMOFLOW_HOST_NAME, else the host name."""
    return get_settings().host_name or socket.gethostname()
