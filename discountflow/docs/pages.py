"""The documentation pages: Markdown files in ``docs/``, their order, and their rendering for
this deployment.

``docs/README.md`` is the home page and the table of contents: each ``##`` heading is a section,
each link in the list beneath it a page (a link inside a plain item, "API Integration", is a
group within the section). Every other page starts with its front matter (``title``,
``summary``, ``updated``) between ``---`` lines, which code hosts show as a table.

Examples speak to the deployment the reader is on. A page may name a value of it as
``{{ name }}`` (``values``): the address (``PUBLIC_URL``, else the request's own), the
environment, the key prefixes, the limits, and whether GraphiQL is served.

Fenced blocks are examples; each shell, HTTP and GraphQL one is marked, on the line above it,
``<!-- run -->`` (the tests run it against a fresh demo, in order, and compare it with the
block marked ``<!-- output -->`` after it; a command that is meant to fail says
``<!-- run: exit 1 -->``) or ``<!-- not run: why -->``. An output matches when it is what the
block shows, where ``...`` stands for anything (``tests/docs.py``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as etree
from dataclasses import dataclass, field, replace
from datetime import date
from functools import cache, lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import markdown
from flask import current_app, url_for
from limits import parse_many
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor
from markupsafe import escape

from ..config import VERSION

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
INDEX = DOCS / "README.md"
CHANGELOG = ROOT / "CHANGELOG.md"
HOME = "README"  # the slug of the home page
EXAMPLE_LANGUAGES = ("sh", "http", "graphql")  # each block of these is marked run or not run
MARKER = re.compile(
    r"<!-- (run(?:: exit [0-9]+)?|output|not run: [^>]+?) -->\n```(\w*)\n(.*?)```", re.S
)
MARKER_LINE = re.compile(r"^<!-- (?:run|output|not run)[^>]*-->\n", re.M)
# (an example indented into a list counts too: it is never run, so it must not hide there)
FENCE = re.compile(r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```", re.S | re.M)
PLACEHOLDER = re.compile(r"\{\{ (\w+) \}\}")
DEMO_ADDRESS = "http://127.0.0.1:8000"  # what the pages show where no request says otherwise
SAFE_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


@dataclass(frozen=True)
class Entry:
    """A page's place in the table of contents."""

    slug: str  # the path under /docs/ (and under docs/, without ".md")
    title: str
    trail: tuple[str, ...]  # the breadcrumb above the title: section, then group


@dataclass(frozen=True)
class Example:
    """A fenced block of a page that the tests run (or are told not to)."""

    language: str
    text: str
    marker: str  # "run", "run: exit 1", "output" or "not run: …"


@dataclass
class Page:
    """A page rendered for one deployment and address."""

    slug: str
    title: str
    summary: str
    updated: date | None
    html: str
    headings: list[dict] = field(default_factory=list)  # (id, text) of its ## and ### headings
    trail: tuple[str, ...] = ()


def source_path(slug: str) -> Path:
    """The file a page is made from."""
    if slug == "releases":
        return CHANGELOG
    return DOCS / f"{slug}.md"


def _slug_of(link: str) -> str:
    """The slug a link from ``docs/README.md`` names (``guides/x.md`` → ``guides/x``)."""
    path = link.split("#", 1)[0]
    if path == "../CHANGELOG.md":
        return "releases"
    return path.removesuffix(".md")


@cache
def contents() -> tuple[tuple[str, tuple[Entry, ...]], ...]:
    """The sections of the table of contents, in order, each with its pages."""
    sections: list[tuple[str, list[Entry]]] = []
    group: str | None = None
    for line in INDEX.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            sections.append((line[3:].strip(), []))
            group = None
        elif sections and (item := re.match(r"( *)- (.*)", line)):
            indent, text = item.groups()
            link = re.fullmatch(r"\[(.+?)\]\(([^)\s]+\.md)\)(?: — .*)?", text.strip())
            if link is None:
                group = text.strip()
                continue
            if not indent:
                group = None
            section = sections[-1][0]
            trail = (section, group) if group and indent else (section,)
            sections[-1][1].append(Entry(_slug_of(link.group(2)), link.group(1), trail))
    return tuple((name, tuple(entries)) for name, entries in sections)


@cache
def entries() -> dict[str, Entry]:
    """Every page of the table of contents, by slug."""
    return {entry.slug: entry for _, section in contents() for entry in section}


def examples(source: Path) -> list[Example]:
    """The marked fenced blocks of a Markdown file, in order."""
    text = source.read_text(encoding="utf-8")
    return [Example(language, body, marker) for marker, language, body in MARKER.findall(text)]


def unmarked_examples(source: Path) -> list[str]:
    """Shell, HTTP and GraphQL blocks of a Markdown file that say neither run nor not run."""
    text = source.read_text(encoding="utf-8")
    marked = {match.start(2) - 3 for match in MARKER.finditer(text)}  # where their ``` starts
    return [
        body
        for match in FENCE.finditer(text)
        if match.group(1) in EXAMPLE_LANGUAGES and match.start() not in marked
        for body in [match.group(2)]
    ]


# --- this deployment's values -------------------------------------------------------------------


def base_url(request_url: str | None) -> str:
    """Where the reader reaches this service: ``PUBLIC_URL``, else the request's own scheme and
    host (when it is a plain host name or address), else the demo's address."""
    configured = current_app.config.get("PUBLIC_URL")
    if configured:
        return configured.rstrip("/")
    if request_url:
        parts = urlsplit(request_url)
        if parts.scheme in ("http", "https") and SAFE_HOST.fullmatch(parts.netloc):
            return f"{parts.scheme}://{parts.netloc}"
    return DEMO_ADDRESS


def values(address: str) -> dict[str, str]:
    """What ``{{ name }}`` stands for on this deployment, at ``address``."""
    config = current_app.config
    environment = config["DISCOUNTFLOW_ENV"]
    suffix = "test" if environment == "staging" else "live"
    return {
        "base_url": address,
        "host": urlsplit(address).netloc,
        "environment": environment.capitalize(),
        "key_prefix": f"sk_{suffix}_",
        "read_only_prefix": f"rk_{suffix}_",
        "rate_limit": _per(config["API_RATE_LIMIT"]),
        "rate_limit_amount": str(parse_many(config["API_RATE_LIMIT"])[0].amount),
        "environment_id": environment,  # as the API writes it: "staging"
        "auth_failure_limit": _per(config["AUTH_FAILURE_LIMIT"]),
        "version": VERSION,
        # GraphiQL is served on staging only: a link there, a sentence on production.
        "graphiql": (
            f"GraphiQL at [`/v2/graphql/ide`]({address}/v2/graphql/ide)"
            if environment == "staging"
            else "GraphiQL on staging deployments (production serves no GraphQL IDE)"
        ),
    }


def _per(limit: str) -> str:
    """A limit in the ``limits`` notation as a person reads it: "1,000 per minute"."""
    said = []
    for item in parse_many(limit):
        unit = item.GRANULARITY.name
        said.append(
            f"{item.amount:,} per {unit}"
            if item.multiples == 1
            else f"{item.amount:,} per {item.multiples} {unit}s"
        )
    return "; ".join(said)


def substitute(text: str, known: dict[str, str]) -> str:
    """The text with each ``{{ name }}`` replaced (an unknown name is an error of the page)."""
    return PLACEHOLDER.sub(lambda match: known[match.group(1)], text)


# --- rendering ----------------------------------------------------------------------------------


class _Links(Treeprocessor):
    """Links between pages point at ``x.md`` (so they work on a code host): serve them here."""

    def __init__(self, md, slug: str) -> None:
        super().__init__(md)
        self.folder = Path(slug).parent

    def run(self, root: etree.Element) -> None:
        for link in root.iter("a"):
            href = link.get("href", "")
            path, _, anchor = href.partition("#")
            if not path.endswith(".md") or "://" in path:
                continue
            target = _slug_of(str((self.folder / path).as_posix()))
            target = re.sub(r"(^|/)[^/]+/\.\./", r"\1", target)  # guides/../faqs → faqs
            if target == "../CHANGELOG" or target.endswith("CHANGELOG"):
                target = "releases"
            href = url_for("docs.page", slug=target) if target != HOME else url_for("docs.home")
            link.set("href", href + (f"#{anchor}" if anchor else ""))


class _DocsLinks(Extension):
    def __init__(self, slug: str) -> None:
        super().__init__()
        self.slug = slug

    def extendMarkdown(self, md) -> None:  # noqa: N802 - Python-Markdown's name
        md.treeprocessors.register(_Links(md, self.slug), "docs_links", 1)


# Pages are rendered once per deployment: the address is put in afterwards (a new ``Host`` costs
# a replacement, not a rendering), where the rendering wrote this stand-in for it.
STAND_IN = "http://docs-address.invalid"


@lru_cache(maxsize=64)
def _render(slug: str, known: tuple[tuple[str, str], ...], modified: float) -> Page:
    source = substitute(source_path(slug).read_text(encoding="utf-8"), dict(known))
    source = MARKER_LINE.sub("", source)  # what the tests are told is not for the reader
    if slug == "releases":  # the changelog has no front matter: its first heading is its title
        source = "---\ntitle: Releases\nsummary: What changed in each version.\n---\n" + re.sub(
            r"\A# .*\n", "", source
        )
    md = markdown.Markdown(
        extensions=["meta", "tables", "fenced_code", "codehilite", "toc", _DocsLinks(slug)],
        extension_configs={
            "codehilite": {"guess_lang": False, "css_class": "highlight"},
            "toc": {"toc_depth": "2-3"},
        },
        output_format="html",
    )
    html = md.convert(source)
    meta = {name: " ".join(lines) for name, lines in md.Meta.items()}  # type: ignore[attr-defined]
    updated = date.fromisoformat(meta["updated"]) if meta.get("updated") else None
    headings = [
        {"id": token["id"], "text": token["name"]}
        for top in md.toc_tokens  # type: ignore[attr-defined]
        for token in [top, *top["children"]]
    ]
    entry = entries().get(slug)
    return Page(
        slug=slug,
        title=meta.get("title") or (entry.title if entry else slug),
        summary=meta.get("summary", ""),
        updated=updated,
        html=html,
        headings=headings,
        trail=entry.trail if entry else (),
    )


def _rendered(slug: str) -> Page:
    known = values(STAND_IN)
    return _render(slug, tuple(sorted(known.items())), source_path(slug).stat().st_mtime)


def render(slug: str, address: str) -> Page:
    """A page as this deployment shows it to a reader at ``address``."""
    page = _rendered(slug)
    html = page.html.replace(STAND_IN, str(escape(address)))
    html = html.replace(urlsplit(STAND_IN).netloc, str(escape(urlsplit(address).netloc)))
    return replace(page, html=html)


def exists(slug: str) -> bool:
    """Whether ``slug`` is a page of the table of contents (or the home page)."""
    return slug == HOME or slug in entries()


def search_index() -> list[dict]:
    """Every page's title and headings, for the search box."""
    index = []
    for slug in [HOME, *entries()]:
        page = _rendered(slug)
        url = url_for("docs.home") if slug == HOME else url_for("docs.page", slug=slug)
        index.append({"url": url, "title": page.title, "headings": page.headings})
    return index
