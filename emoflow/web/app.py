"""The inspector application: `create_app()` for uvicorn and tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from emoflow.web import api, pages
from emoflow.web.docs import add_docs
from emoflow.web.headers import HeadFallback, PageHeaders
from emoflow.web.launcher import Launcher
from emoflow.web.limits import Limits
from emoflow.web.live import ProgressBoard
from kernel.errors import InputError, StoreError
from kernel.progress import listening
from kernel.runtime import configure_environment
from stores.store import ArtifactStore


def create_app(store: ArtifactStore | None = None, limits: Limits | None = None, workers: int = 2) -> FastAPI:
    """`store` defaults to the one the settings name (the same the tasks open)."""
    configure_environment()
    from flows.narrate import open_store  # after the environment: it imports Prefect

    limits = limits or Limits()
    launcher = Launcher(workers)

    progress = ProgressBoard()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        with listening(progress):  # the fractions of stages this server's flows compute
            yield
            launcher.shutdown()

    app = FastAPI(
        title="emoflow inspector",
        version="1",
        description="Submit narration jobs, inspect runs, stream artifacts by hash, edit emotion curves.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load Swagger UI and ReDoc from a CDN: add_docs serves local files
        redoc_url=None,
    )
    app.state.store = store or open_store()
    app.state.limits = limits
    app.state.launcher = launcher
    app.state.progress = progress

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

    # the pages get their errors as pages; the JSON API (and every client of it) keeps JSON
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if is_page(request) and exc.status_code >= 400:  # not the 303 to the login page
            return pages.error_page(request, exc.status_code, str(exc.detail), exc.headers)
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if is_page(request):
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc'][1:]) or 'request'}: {error['msg']}"
                for error in exc.errors()
            )
            return pages.error_page(request, status.HTTP_422_UNPROCESSABLE_CONTENT, problems)
        return await request_validation_exception_handler(request, exc)

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError) -> Response:
        return error_reply(request, status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc))

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> Response:
        return error_reply(request, status.HTTP_503_SERVICE_UNAVAILABLE, str(exc))

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/ui/runs")

    app.include_router(api.router)
    app.include_router(pages.router)
    add_docs(app)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.add_middleware(PageHeaders)
    app.add_middleware(HeadFallback)  # outermost: its GET retry passes through everything else
    return app


def is_page(request: Request) -> bool:
    return request.url.path == "/ui" or request.url.path.startswith("/ui/")


def error_reply(request: Request, code: int, message: str) -> Response:
    return (
        pages.error_page(request, code, message)
        if is_page(request)
        else JSONResponse({"detail": message}, status_code=code)
    )
