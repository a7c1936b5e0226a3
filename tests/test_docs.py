"""The documentation site at /docs, and every runnable example of its pages (``tests/docs.py``)."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from discountflow.docs import pages

from . import docs
from .conftest import make_app

SLUGS = [pages.HOME, *pages.entries()]
# Every file whose examples the tests run: the pages, and the repository's README (written for
# a code host: its examples name the demo's address, http://127.0.0.1:8000, literally).
SOURCES = {slug: pages.source_path(slug) for slug in SLUGS} | {"repository README": docs.README}


def url_of(slug: str) -> str:
    return "/docs/" if slug == pages.HOME else f"/docs/{slug}"


def text_of(response) -> str:
    """What a reader sees of a page: its text, without tags (code is highlighted in spans)."""
    from html import unescape

    return unescape(re.sub(r"<[^>]+>", "", response.get_data(as_text=True)))


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


@pytest.mark.parametrize("source", SOURCES)
def test_every_example_says_whether_it_runs(source):
    assert pages.unmarked_examples(SOURCES[source]) == []
    markers = pages.examples(SOURCES[source])
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
    html = re.sub(r">\s+<", "><", client.get("/docs/api/authentication").get_data(as_text=True))
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
    html = text_of(client.get("/docs/api/authentication", base_url="https://approvals.example.com"))
    assert "https://approvals.example.com/v2/approvals" in html
    assert "Host: approvals.example.com" in html
    assert "127.0.0.1:8000" not in html


def test_a_host_that_is_no_host_name_is_not_written_into_a_page(client):
    response = client.get(
        "/docs/api/authentication", headers={"Host": 'evil.example"><script>x()</script>'}
    )
    assert "<script>x()" not in response.get_data(as_text=True)
    assert "http://127.0.0.1:8000/v2/approvals" in text_of(response)


def test_public_url_wins_over_the_requests_host(tmp_path):
    app = make_app(tmp_path, PUBLIC_URL="https://discounts.example.com/")
    html = text_of(app.test_client().get("/docs/api/authentication"))
    assert "https://discounts.example.com/v2/approvals" in html


def test_production_docs_say_production(tmp_path):
    app = make_app(
        tmp_path,
        DISCOUNTFLOW_ENV="production",
        SECRET_KEY="Zq8v3Lr0PkWm5Xn2Tb7Yc4Hd9Fg1Js6A",
        API_RATE_LIMIT="1000 per minute",
        SESSION_COOKIE_SECURE=True,
    )
    html = text_of(
        app.test_client().get("/docs/api/authentication", base_url="https://api.example.com")
    )
    assert "⚠️ This documentation applies to the Production environment." in html
    assert "Bearer sk_live_123456789" in html
    assert "This deployment allows 1,000 per minute per key." in html
    assert "sk_test_123456789" not in html
    assert '"environment": "production"' in html and '"limit": 1000' in html  # /v2/me's answer


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


RUNNABLE = [
    source
    for source, path in SOURCES.items()
    if any(example.marker.startswith("run") for example in pages.examples(path))
]


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory):
    """The demo's database, made once by the command the Quick Start runs, and its key."""
    from .test_cli import key_from

    folder = tmp_path_factory.mktemp("demo")
    environ = {
        "DATABASE_URL": f"sqlite:///{folder / 'demo.sqlite'}",
        "SECRET_KEY": SECRET,
        "BCRYPT_ROUNDS": "4",
        "DISCOUNTFLOW_ENV": "staging",
    }
    done = subprocess.run(
        [str(docs.ROOT / ".venv" / "bin" / "flask"), "--app", "app", "demo"],
        cwd=docs.ROOT,
        env={**os.environ, **environ},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return folder / "demo.sqlite", key_from(done.stdout)


SECRET = "docs-examples-0a5c9b2d7e4f1a8c9f4c2e7a1b8d3f6e"


@pytest.fixture
def demo(tmp_path, demo_template):
    """A fresh copy of the demo, served on loopback; the commands of the examples use it too."""
    import shutil
    import threading

    from werkzeug.serving import make_server

    from discountflow import create_app
    from discountflow.extensions import db

    database = tmp_path / "demo.sqlite"
    shutil.copyfile(demo_template[0], database)
    url = f"sqlite:///{database}"
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "SECRET_KEY": SECRET,
            "BCRYPT_ROUNDS": 4,
            "DISCOUNTFLOW_ENV": "staging",
            "ACCESS_LOG": False,
        }
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    environ = {"DATABASE_URL": url, "SECRET_KEY": SECRET, "BCRYPT_ROUNDS": "4"}
    try:
        yield docs.Run(f"http://127.0.0.1:{server.server_port}", demo_template[1], environ)
    finally:
        server.shutdown()
        thread.join()
        with app.app_context():
            db.engine.dispose()


@pytest.mark.slow
@pytest.mark.sqlite_only  # the pages speak of the embedded default; the API is tested on both
@pytest.mark.parametrize("source", RUNNABLE)
def test_every_runnable_example_prints_what_the_page_shows(app, demo, source):
    with app.test_request_context():
        values = pages.values(demo.base_url)
    examples = pages.examples(SOURCES[source])
    for number, example in enumerate(examples):
        if not example.marker.startswith("run"):
            continue
        printed = docs.run(example, values, demo)
        following = examples[number + 1] if number + 1 < len(examples) else None
        if following is not None and following.marker == "output":
            shown = docs.as_served(following.text, values)
            assert docs.differences(shown, printed) == [], f"{source}:\n{example.text}"


def test_the_version_is_one_everywhere(client, runner):
    from discountflow import __version__

    changelog = (docs.ROOT / "CHANGELOG.md").read_text()
    assert re.search(
        rf"^## \[{re.escape(__version__)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.M
    )
    assert client.get("/v2/openapi.json").get_json()["info"]["version"] == __version__
    assert (
        f'"""DiscountFlow {__version__}: '
        in (docs.ROOT / "discountflow/schema.graphql").read_text()
    )
    assert runner.invoke(args=["version"]).output == f"DiscountFlow {__version__}\n"
    releases = client.get("/docs/releases").get_data(as_text=True)
    assert f"DiscountFlow {__version__}" in releases  # the footer of every page
    assert f'<h2 id="{__version__.replace(".", "")}-' in releases


def test_an_example_indented_into_a_list_is_not_left_unchecked(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "1. Ask:\n\n   ```sh\n   curl -s {{ base_url }}/v2/me\n   ```\n\n"
        "<!-- run -->\n```sh\ncurl -s {{ base_url }}/v2/me\n```\n"
    )
    assert pages.unmarked_examples(page) == ["   curl -s {{ base_url }}/v2/me\n"]
    assert [example.marker for example in pages.examples(page)] == ["run"]
