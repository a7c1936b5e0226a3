"""The documentation site at /docs, and every runnable example of its pages (``tests/docs.py``)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from discountflow.docs import pages

from . import docs
from .conftest import make_app

SLUGS = [pages.HOME, *pages.entries()]


def url_of(slug: str) -> str:
    return "/docs/" if slug == pages.HOME else f"/docs/{slug}"


# --- the site -----------------------------------------------------------------------------------


def test_the_table_of_contents_has_the_seeds_sections():
    sections = [name for name, _ in pages.contents()]
    assert sections == ["Quick Start", "Guides", "API References", "FAQs"]
    references = [entry.title for entry in dict(pages.contents())["API References"]]
    assert references[:2] == ["Overview", "Authentication"]
    assert references[-1] == "Releases"
    assert pages.entries()["guides/manage-api-keys"].trail == ("Quick Start", "API Integration")


@pytest.mark.parametrize("slug", SLUGS)
def test_every_page_is_served_without_signing_in(client, slug):
    response = client.get(url_of(slug))
    assert response.status_code == 200, slug
    html = response.get_data(as_text=True)
    assert "⚠️ This documentation applies to the Staging environment." in html
    assert "← Back to Home" in html
    assert "{{" not in html, "a placeholder the page does not know"
    assert "<h1>" in html
    source = pages.source_path(slug).read_text()
    if slug != "releases":
        assert re.search(r"^updated: \d{4}-\d{2}-\d{2}$", source, re.M), "say when it changed"
        assert "Last updated: <time" in html


@pytest.mark.parametrize("slug", SLUGS)
def test_every_example_says_whether_it_runs(slug):
    assert pages.unmarked_examples(slug) == []
    markers = pages.examples(slug)
    for number, example in enumerate(markers):
        if example.marker == "output":
            assert number and markers[number - 1].marker.startswith("run"), (
                f"an output block must follow a runnable one: {example.text[:80]}"
            )


def test_every_link_between_pages_leads_to_a_page(client):
    for slug in SLUGS:
        html = client.get(url_of(slug)).get_data(as_text=True)
        for target in set(re.findall(r'href="(/docs/[^"#]*)', html)):
            if target.startswith("/docs/static/"):
                continue
            assert client.get(target).status_code == 200, f"{slug} links to {target}"
        assert not re.search(r'href="[^"]*\.md[#"]', html), f"{slug}: a link to a source file"


def test_the_authentication_page_is_the_seeds(client):
    html = client.get("/docs/api/authentication").get_data(as_text=True)
    for words in (
        "All API requests must be authenticated using an API key.",
        "We use Bearer Token authentication.",
        "Navigate to <strong>Settings → API Keys</strong>",
        "⚠️ For security reasons, API keys are shown only once.",
        "Using production key in staging (or vice versa)",
        "Staging: 500 requests per minute",
        "Production: 1,000 requests per minute",
        '<li><a href="/docs/">Documentation</a></li><li>API References</li>'
        '<li aria-current="page">Authentication</li>',
    ):
        assert words in html, words


def test_the_manage_page_has_the_seeds_breadcrumb(client):
    html = client.get("/docs/guides/manage-api-keys").get_data(as_text=True)
    assert (
        '<li>Quick Start</li><li>API Integration</li><li aria-current="page">Manage API keys</li>'
        in re.sub(r">\s+<", "><", html)
    )
    for words in ("Generate API Key", "Revoke API Key", "Last Used", "No API key generated"):
        assert words in html, words


def test_examples_name_the_host_the_reader_is_on(client):
    html = client.get(
        "/docs/api/authentication", base_url="https://approvals.example.com"
    ).get_data(as_text=True)
    assert "https://approvals.example.com/v2/approvals" in html
    assert "Host: approvals.example.com" in html
    assert "127.0.0.1:8000" not in html


def test_a_host_that_is_no_host_name_is_not_written_into_a_page(client):
    html = client.get(
        "/docs/api/authentication", headers={"Host": 'evil.example"><script>x()</script>'}
    ).get_data(as_text=True)
    assert "<script>x()" not in html
    assert "http://127.0.0.1:8000/v2/approvals" in html


def test_public_url_wins_over_the_requests_host(tmp_path):
    app = make_app(tmp_path, PUBLIC_URL="https://discounts.example.com/")
    html = app.test_client().get("/docs/api/authentication").get_data(as_text=True)
    assert "https://discounts.example.com/v2/approvals" in html


def test_production_docs_say_production(tmp_path):
    app = make_app(
        tmp_path,
        DISCOUNTFLOW_ENV="production",
        SECRET_KEY="Zq8v3Lr0PkWm5Xn2Tb7Yc4Hd9Fg1Js6A",
        API_RATE_LIMIT="1000 per minute",
        SESSION_COOKIE_SECURE=True,
    )
    html = (
        app.test_client()
        .get("/docs/api/authentication", base_url="https://api.example.com")
        .get_data(as_text=True)
    )
    assert "⚠️ This documentation applies to the Production environment." in html
    assert "Bearer sk_live_123456789" in html
    assert "This deployment allows 1,000 per minute per key." in html
    assert "sk_test_123456789" not in html


def test_a_page_that_does_not_exist_is_404(client):
    for path in ("/docs/nope", "/docs/../README", "/docs/README", "/docs/api/../../app.py"):
        assert client.get(path).status_code == 404, path


def test_the_search_index_holds_every_title_and_heading(client):
    html = client.get("/docs/").get_data(as_text=True)
    index = json.loads(
        re.search(
            r'<script type="application/json" id="docs-index">(.*?)</script>', html, re.S
        ).group(1)
    )
    titles = {page["title"] for page in index}
    assert {"Authentication", "Manage API keys", "Releases", "FAQs"} <= titles
    authentication = next(page for page in index if page["title"] == "Authentication")
    assert {"text": "❌ Authentication Errors", "id": "authentication-errors"} in (
        authentication["headings"]
    )


def test_the_docs_are_linked_from_every_page_of_the_dashboard(client):
    assert 'href="/docs/"' in client.get("/sign-in").get_data(as_text=True)


# --- every example runs -------------------------------------------------------------------------


RUNNABLE = [slug for slug in SLUGS if any(e.marker.startswith("run") for e in pages.examples(slug))]


@pytest.fixture
def demo(tmp_path):
    """A fresh demo, served by gunicorn, as the Quick Start makes one."""
    from .test_cli import key_from
    from .test_gunicorn import start_gunicorn, stop, wait_until_serving

    database = f"sqlite:///{tmp_path / 'demo.sqlite'}"
    environ = {
        "DATABASE_URL": database,
        "SECRET_KEY": "docs-examples-0a5c9b2d7e4f1a8c9f4c2e7a1b8d3f6e",
        "BCRYPT_ROUNDS": "4",
        "DISCOUNTFLOW_ENV": "staging",
    }
    done = subprocess.run(
        [str(docs.ROOT / ".venv" / "bin" / "flask"), "--app", "app", "demo"],
        cwd=docs.ROOT,
        env={**__import__("os").environ, **environ},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    process, port = start_gunicorn(tmp_path, environ=environ)
    try:
        wait_until_serving(port)
        yield docs.Run(f"http://127.0.0.1:{port}", key_from(done.stdout), environ)
    finally:
        stop(process)


@pytest.mark.slow
@pytest.mark.sqlite_only  # the pages speak of the embedded default; the API is tested on both
@pytest.mark.parametrize("slug", RUNNABLE)
def test_every_runnable_example_prints_what_the_page_shows(app, demo, slug):
    with app.test_request_context():
        values = pages.values(demo.base_url)
    examples = pages.examples(slug)
    for number, example in enumerate(examples):
        if not example.marker.startswith("run"):
            continue
        printed = docs.run(example, values, demo)
        following = examples[number + 1] if number + 1 < len(examples) else None
        if following is not None and following.marker == "output":
            shown = pages.substitute(following.text, values)
            assert docs.differences(shown, printed) == [], f"{slug}:\n{example.text}"
