"""Prefect tasks: one thin adapter per stage between the engines and the store.

Prefect reads its settings at import, so the environment is set first.
"""

from kernel.runtime import configure_environment

configure_environment()
