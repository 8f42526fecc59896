"""/docs (Swagger UI) and /redoc (ReDoc), served entirely by the service itself.

The assets come from the `fastapi-offline` package (Swagger UI and ReDoc bundles, favicon),
pinned by the lock file; the pages from `fastapi-csp-docs`, which has no inline script, so a
Content-Security-Policy can allow the service's own origin alone.
"""

from importlib.resources import files

import fastapi_csp_docs
from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

SWAGGER_UI = "/docs"
REDOC = "/redoc"
_ASSETS = "/docs/assets"
_SWAGGER_INITIALIZER = "/docs/swagger-initializer.js"
_REDOC_CSS = "/redoc/redoc.css"


def install_docs(app: FastAPI, *, openapi_url: str = "/openapi.json") -> None:
    """Serve Swagger UI at /docs and ReDoc at /redoc from the service's own origin.

    The app must be built with `docs_url=None, redoc_url=None`.
    """
    assets = StaticFiles(directory=str(files("fastapi_offline") / "static"))
    app.mount(_ASSETS, assets, name="documentation-assets")
    favicon = f"{_ASSETS}/favicon.png"

    async def swagger_ui(request: Request) -> Response:
        return fastapi_csp_docs.get_swagger_ui_html(
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{_ASSETS}/swagger-ui.css",
            swagger_favicon_url=favicon,
            swagger_ui_init_script_url=_SWAGGER_INITIALIZER,
        )

    async def swagger_initializer(request: Request) -> Response:
        # The API key stays filled in across reloads of the page, as users expect.
        return fastapi_csp_docs.get_swagger_ui_init_js(
            openapi_url=openapi_url,
            swagger_ui_parameters={"persistAuthorization": True},
        )

    async def redoc(request: Request) -> Response:
        return fastapi_csp_docs.get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=favicon,
            redoc_css_url=_REDOC_CSS,
            with_google_fonts=False,
        )

    async def redoc_css(request: Request) -> Response:
        return fastapi_csp_docs.get_redoc_css()

    app.add_route(SWAGGER_UI, swagger_ui, include_in_schema=False)
    app.add_route(_SWAGGER_INITIALIZER, swagger_initializer, include_in_schema=False)
    app.add_route(REDOC, redoc, include_in_schema=False)
    app.add_route(_REDOC_CSS, redoc_css, include_in_schema=False)
