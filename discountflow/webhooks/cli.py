"""``flask webhooks work|status``: the delivery worker, and what it has before it."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup, ScriptInfo

from ..database import rfc3339
from ..notifications.worker import start_beside
from .worker import Worker, backlog, log, stop_on_signals

webhooks_cli = AppGroup("webhooks", help="Deliver webhooks, and see the backlog.")


@webhooks_cli.command("work")
@click.option("--burst", is_flag=True, help="Stop when nothing is due (instead of waiting).")
def work_command(burst: bool) -> None:
    """Deliver pending webhooks and notifications until stopped (SIGTERM finishes the ones
    in hand).

    Run one on SQLite; on PostgreSQL run as many as you like, on as many hosts.
    """
    stop = stop_on_signals()
    poll = float(current_app.config["WEBHOOK_POLL_SECONDS"])
    worker = Worker()
    until = "until nothing is due" if burst else "Ctrl+C or SIGTERM to stop"
    # Logged, as its stopping is: stdout holds the deliveries' JSON lines only.
    log.info(
        "webhook worker: started; %d deliveries at a time, polling every %g s (%s)",
        worker.slots,
        poll,
        until,
    )
    app = click.get_current_context().ensure_object(ScriptInfo).load_app()
    notifications = start_beside(app, stop, poll=poll, burst=burst)  # the emails, beside
    attempts = worker.run(stop, poll=poll, burst=burst)
    notifications.join()
    if burst:
        click.echo(f"Made {attempts} delivery attempt{'s' if attempts != 1 else ''}.", err=True)


@webhooks_cli.command("status")
def status_command() -> None:
    """Print the backlog: due now, scheduled for later, and the last day's outcomes."""
    state = backlog()
    oldest = rfc3339(state.oldest_due) if state.oldest_due else "-"
    click.echo(f"due now:             {state.due} (oldest due since {oldest})")
    click.echo(f"scheduled for later: {state.scheduled}")
    click.echo(f"succeeded, last 24h: {state.succeeded_last_day}")
    click.echo(f"failed, last 24h:    {state.failed_last_day}")
    click.echo(f"endpoints disabled:  {state.disabled_endpoints}")
