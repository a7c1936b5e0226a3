"""The app, plus one route that fails unexpectedly: for tests of what a real server does then."""

from discountflow import create_app

app = create_app()


@app.get("/broken")
def broken():
    raise RuntimeError("a bug")
