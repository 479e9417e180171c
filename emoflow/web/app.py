"""The inspector application: `create_app()` for uvicorn and tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from emoflow.web import api, pages
from emoflow.web.launcher import Launcher
from emoflow.web.limits import Limits
from kernel.errors import InputError, StoreError
from kernel.runtime import configure_environment
from stores.store import ArtifactStore


def create_app(store: ArtifactStore | None = None, limits: Limits | None = None, workers: int = 2) -> FastAPI:
    """`store` defaults to the one the settings name (the same the tasks open)."""
    configure_environment()
    from flows.narrate import open_store  # after the environment: it imports Prefect

    limits = limits or Limits()
    launcher = Launcher(workers)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        launcher.shutdown()

    app = FastAPI(
        title="emoflow inspector",
        version="1",
        description="Submit narration jobs, inspect runs, stream artifacts by hash, edit emotion curves.",
        lifespan=lifespan,
    )
    app.state.store = store or open_store()
    app.state.limits = limits
    app.state.launcher = launcher

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        # refuse oversized bodies before they are parsed or spooled to disk
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limits.max_request_bytes:
            return JSONResponse(
                {"detail": f"request body is larger than {limits.max_request_bytes} bytes"},
                status_code=status.HTTP_413_CONTENT_TOO_LARGE,
            )
        return await call_next(request)

    @app.exception_handler(InputError)
    async def input_error(_request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(StoreError)
    async def store_error(_request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/ui/runs")

    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    return app
