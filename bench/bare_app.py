"""The baseline: a minimal Flask app returning JSON like ``/v2/me``, with no auth or limits."""

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
