"""The API docs (`/docs`, Swagger UI) served entirely from this install: no CDN, so they work on an
air-gapped machine.

Swagger UI's files come from the `swagger-ui-bundle-v2` package (PyPI; Apache-2.0, the licence ships
in the package's dist-info), a maintained fork of spec-first/swagger_ui_bundle (the bundle Connexion
uses) that tracks Swagger UI 5, which renders FastAPI's OpenAPI 3.1. We serve only the three files the
page loads, from an allow-list. ReDoc is not offered: it would need a CDN too.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

router = APIRouter(include_in_schema=False)

ASSETS = "/docs/assets"
# The files the docs page loads, and their types.
FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}


def assets_dir() -> Path:
    from swagger_ui_bundle import swagger_ui_path

    return Path(str(swagger_ui_path))


@router.get("/docs", response_class=HTMLResponse)
def docs(request: Request) -> HTMLResponse:
    app = request.app
    return get_swagger_ui_html(
        openapi_url=app.openapi_url,
        title=f"{app.title} — API",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        oauth2_redirect_url="/docs/oauth2-redirect",
    )


@router.get("/docs/oauth2-redirect", response_class=HTMLResponse)
def oauth2_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get(ASSETS + "/{name}")
def asset(name: str) -> FileResponse:
    if name not in FILES:
        raise HTTPException(404, "not found")
    return FileResponse(
        assets_dir() / name, media_type=FILES[name], headers={"Cache-Control": "public, max-age=86400"}
    )
