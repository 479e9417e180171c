"""Prefect flows. Prefect reads its settings at import, so the environment is set first."""

from emoflow.runtime import configure_environment

configure_environment()
