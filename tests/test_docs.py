"""/docs and /redoc as a person uses them: in Debian's Chromium, with the outside world cut off."""

import asyncio
import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, Route, expect, sync_playwright

from tests.support import LiveServer, create_key, database_of_its_own, live_server

CHROMIUM = "/usr/bin/chromium"
# No first-run fetches of its own (component updates, sync, safe browsing lists).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def docs_server() -> Iterator[tuple[LiveServer, str]]:
    """The real server, requiring API keys, and a key with every scope; the loan the test
    makes goes to a database of its own."""
    with database_of_its_own("docs") as url:
        key = asyncio.run(create_key(url))
        with live_server({"DATABASE_URL": url, "AUTH_REQUIRED": "true"}) as server:
            yield server, key


@pytest.fixture(scope="module")
def browser(docs_server: tuple[LiveServer, str]) -> Iterator[Browser]:
    """Chromium, started after the server: Playwright's own event loop runs until it stops."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def offline_page(
    browser: Browser, docs_server: tuple[LiveServer, str]
) -> Iterator[tuple[Page, list[str]]]:
    """A page that reaches the server's origin only; every other request is aborted and
    listed, so a test can fail on it."""
    server, _ = docs_server
    origin = urlsplit(server.url).netloc
    outside: list[str] = []

    def only_the_origin(route: Route, request: Request) -> None:
        if urlsplit(request.url).netloc == origin or request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            outside.append(request.url)
            route.abort()

    context = browser.new_context()
    context.route("**/*", only_the_origin)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    yield page, outside
    context.close()


def loan_operations(server: LiveServer) -> list[tuple[str, str]]:
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    return [
        (method.upper(), path)
        for path, operations in paths.items()
        for method, operation in operations.items()
        if "loans" in operation.get("tags", ())
    ]


def test_swagger_ui_lists_every_loan_operation_and_creates_a_loan_with_a_key(
    offline_page: tuple[Page, list[str]], docs_server: tuple[LiveServer, str]
) -> None:
    page, outside = offline_page
    server, key = docs_server
    page.goto(f"{server.url}/docs")

    for method, path in loan_operations(server):
        method_label = f".opblock-summary-method:text-is('{method}')"
        operation = page.locator(f".opblock-summary:has({method_label})")
        expect(operation.filter(has=page.locator(f"[data-path='{path}']"))).to_have_count(1)

    page.get_by_role("button", name="Authorize").first.click()
    page.locator(".modal-ux input").first.fill(key)
    page.locator(".modal-ux .auth-btn-wrapper button.authorize").click()
    page.locator(".modal-ux .auth-btn-wrapper button.btn-done").click()

    create = page.locator("#operations-loans-create_loan_api_loans_post")
    create.locator(".opblock-summary").click()
    create.get_by_role("button", name="Try it out").click()
    create.get_by_role("button", name="Execute").click()

    status = create.locator(".live-responses-table .response .response-col_status").first
    expect(status).to_have_text("201", timeout=TIMEOUT_MS)
    assert outside == []


def test_redoc_lists_the_loan_operations(
    offline_page: tuple[Page, list[str]], docs_server: tuple[LiveServer, str]
) -> None:
    page, outside = offline_page
    server, _ = docs_server
    page.goto(f"{server.url}/redoc")

    for _, path in loan_operations(server):
        expect(page.get_by_text(re.compile(re.escape(path) + "$")).first).to_be_attached()
    assert outside == []


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_documentation_pages_allow_only_their_own_origin(
    docs_server: tuple[LiveServer, str], path: str
) -> None:
    server, _ = docs_server
    policy = httpx.get(f"{server.url}{path}").headers["content-security-policy"]

    sources = {word for word in policy.replace(";", " ").split() if "." in word or ":" in word}
    assert "default-src 'self'" in policy
    assert sources <= {"data:", "blob:"}, sources
