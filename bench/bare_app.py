"""The baseline: a minimal Flask app returning JSON like ``/v2/me``, with no auth or limits."""

import json
import os

from flask import Flask

app = Flask(__name__)
app.json.sort_keys = False


@app.get("/v2/me")
def me():
    return {
        "object": "api_key_session",
        "organization": {
            "object": "organization",
            "id": "org_0123456789abcdef",
            "name": "Demo Inc.",
            "slug": "demo",
        },
        "key_id": "key_0123456789ab",
        "environment": "staging",
        "read_only": False,
        "rate_limit": {"limit": 500, "window_seconds": 60},
    }


# With BARE_PAGE naming a JSON file (a real page of approvals, captured by
# bench/approvals_list.py), the baseline also serves that page, re-encoded on every request as
# Flask would: what moving a page of that size costs with no auth, query or shaping.
if os.environ.get("BARE_PAGE"):
    with open(os.environ["BARE_PAGE"], encoding="utf-8") as page_file:
        PAGE = json.load(page_file)

    @app.get("/v2/approvals")
    def approvals():
        return PAGE


def create_app() -> Flask:
    """The baseline as a factory, like DiscountFlow's (``bench/harness.py`` builds both so)."""
    return app
