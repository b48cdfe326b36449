"""The web chat page at `/` and its assets, all served from the package (no CDN)."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.staticfiles import PathLike
from starlette.types import Scope

router = APIRouter(tags=["web"])

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
WEB_ASSETS = "/web"

# The page renders model output, which is untrusted. The renderer never parses it as HTML
# (it builds DOM nodes and sets textContent); this policy is the second wall: no inline
# script or event handler attribute runs, and nothing is loaded or sent anywhere but here.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    """The chat page."""
    return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers=_PAGE_HEADERS)


class WebAssets(StaticFiles):
    """The page's scripts and styles, revalidated on every load so an upgrade shows at once."""

    def __init__(self) -> None:
        super().__init__(directory=WEB_DIR)

    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        """StaticFiles' response (ETag, 304s) with `Cache-Control: no-cache` and `nosniff`."""
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
