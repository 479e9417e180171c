"""/docs: Swagger UI from files installed with the server, never from a CDN (the inspector may run
offline, and a CDN script would run with the page's origin)."""

from __future__ import annotations

import base64
import hashlib
import importlib
import re
from html import escape
from pathlib import Path

from fastapi import FastAPI, status
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from emoflow.web.headers import PAGE_HEADERS

# the distribution that installs the `swagger_ui_bundle` module with Swagger UI 5 (OpenAPI 3.1)
PACKAGE = "swagger-ui-bundle-v2"
ASSETS = "/docs/assets"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def swagger_ui_folder() -> Path | None:
    """The folder of Swagger UI's dist files, or None when the bundle is not installed."""
    try:
        bundle = importlib.import_module("swagger_ui_bundle")
    except ImportError:
        return None
    folder = Path(str(getattr(bundle, "swagger_ui_path", "")))
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def add_docs(app: FastAPI) -> None:
    """Serve /docs from the installed bundle, or a page that says what to install.

    The app is made with docs_url=None and redoc_url=None: FastAPI's own pages load their scripts
    from a CDN, and ReDoc has no local bundle here.
    """
    folder = swagger_ui_folder()
    if folder is None:

        @app.get("/docs", include_in_schema=False)
        def docs_missing() -> HTMLResponse:
            return _missing_page(app.openapi_url or "/openapi.json")

        return

    app.mount(ASSETS, StaticFiles(directory=folder), name="swagger-ui")
    page = get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json",
        title=f"{app.title} · API",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",  # FastAPI's default is a remote one
        swagger_ui_parameters={"validatorUrl": None},  # else Swagger UI fetches a badge from its own site
    )
    html = bytes(page.body).decode()
    # the page's one inline script (the SwaggerUIBundle call) is allowed by its hash, nothing else
    hashes = " ".join(f"'sha256-{_sha256(script)}'" for script in _INLINE_SCRIPT.findall(html))
    policy = "; ".join(
        [
            "default-src 'none'",
            f"script-src 'self' {hashes}",
            "style-src 'self' 'unsafe-inline'",  # Swagger UI sets styles as it renders
            "img-src 'self' data:",  # its icons are data: URIs in its stylesheet
            "connect-src 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ]
    )
    headers = PAGE_HEADERS | {"Content-Security-Policy": policy}

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(html, headers=headers)


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def _missing_page(openapi_url: str) -> HTMLResponse:
    url = escape(openapi_url)
    body = f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>API docs unavailable · emoflow inspector</title>
<link rel="stylesheet" href="/static/app.css"></head>
<body><main>
<h1>API docs are not installed</h1>
<p class="error" role="alert">Swagger UI's files are not installed on this server, and the inspector
never loads them from a CDN. Install the <code>{PACKAGE}</code> package (it provides the
<code>swagger_ui_bundle</code> module) and restart the server.</p>
<p>The API's OpenAPI document is served all the same: <a href="{url}">{url}</a>.</p>
<p><a href="/ui/runs">Back to the runs</a></p>
</main></body>
</html>
"""
    return HTMLResponse(body, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
