"""Insights: every figure against answers worked out by hand on a small fixed history, who sees
what, the edge cases, the refusals, and the same numbers on REST, GraphQL and the page.

The history (USD unless said; SEAT lists at 100.00, two units a line; times set by hand):

====  =====  ==============  =====================================  ==========================
 id   who    lines (% off)   route and what happened                times (UTC)
====  =====  ==============  =====================================  ==========================
 a1   rep    10, 20          Manager 2 h, VP 24 h: approved         submitted 01-05 09:00
 a2   rep2   3               auto-approved                          01-12 10:00
 a3   rep    12, custom 0    Manager 4 h: approved                  submitted 02-02 08:00
 a4   rep2   40              Manager 1 h, VP 5 h: rejected          submitted 02-03 09:00
 a5   rep    8               Manager 1 h: sent back for changes     submitted 02-10 09:00
 a6   rep    10              recalled                               02-11 12:00
 a7   rep    20              pending at the Manager level           submitted 2 days ago
 a8   rep2   EUR 50          approved by all three (EUR)            01-20
====  =====  ==============  =====================================  ==========================
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from discountflow.approvals.models import Approval, Decision, Step
from discountflow.audit.models import Event
from discountflow.extensions import db
from discountflow.organizations.models import User

from .approvals_world import act, build_world, create
from .conftest import bearer
from .dashboard import sign_in

PERIOD = "start=2026-01-05&end=2026-02-28"


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _set_times(app, approval_id, submitted, decided=None, steps=(), decisions=(), events=None):
    """Put an approval's history at hand-chosen times: its submit and final decision, its
    decided steps (started, decided) in order, its decisions in order, and its events of a
    type."""
    with app.app_context():
        db.session.execute(
            update(Approval)
            .where(Approval.id == approval_id)
            .values(submitted_at=submitted, decided_at=decided, created_at=submitted)
        )
        rows = db.session.execute(
            select(Step).where(Step.approval_id == approval_id).order_by(Step.position)
        ).scalars()
        for step, (started, finished) in zip(rows, steps, strict=False):
            step.started_at, step.decided_at = started, finished
        made = db.session.execute(
            select(Decision)
            .where(Decision.approval_id == approval_id)
            .order_by(Decision.created_at, Decision.id)
        ).scalars()
        for decision, moment in zip(made, decisions, strict=False):
            decision.created_at = moment
        if events:
            kind, moment = events
            db.session.execute(
                update(Event)
                .where(Event.approval_id == approval_id, Event.type == kind)
                .values(created_at=moment)
            )
        db.session.commit()


def _custom(list_price: int, unit_price: int) -> dict:
    return {
        "description": "On-site workshop",
        "quantity": 1,
        "unit_list_price": list_price,
        "unit_price": unit_price,
    }


def build_history(world) -> dict[str, str]:
    app = world.app
    ids = {}
    ids["a1"] = create(world, "rep", 10, 20, submit=True)
    act(world, "manager", "approve", ids["a1"])
    act(world, "vp", "approve", ids["a1"])
    _set_times(
        app,
        ids["a1"],
        _t("2026-01-05 09:00"),
        _t("2026-01-06 11:00"),
        steps=[
            (_t("2026-01-05 09:00"), _t("2026-01-05 11:00")),
            (_t("2026-01-05 11:00"), _t("2026-01-06 11:00")),
        ],
        decisions=[_t("2026-01-05 11:00"), _t("2026-01-06 11:00")],
    )
    ids["a2"] = create(world, "rep2", 3, submit=True)
    _set_times(app, ids["a2"], _t("2026-01-12 10:00"), _t("2026-01-12 10:00"))

    from .approvals_world import request_body

    body = request_body(12)
    body["line_items"].append(_custom(5_000, 5_000))
    with app.app_context():
        from discountflow.approvals import services
        from discountflow.approvals.schemas import ApprovalCreate

        ids["a3"] = services.create_approval(
            world.actor("rep"), ApprovalCreate.model_validate({**body, "submit": True})
        ).approval.id
    act(world, "manager", "approve", ids["a3"])
    _set_times(
        app,
        ids["a3"],
        _t("2026-02-02 08:00"),
        _t("2026-02-02 12:00"),
        steps=[(_t("2026-02-02 08:00"), _t("2026-02-02 12:00"))],
    )
    ids["a4"] = create(world, "rep2", 40, submit=True)
    act(world, "manager", "approve", ids["a4"])
    act(world, "vp", "reject", ids["a4"], "Too deep.")
    _set_times(
        app,
        ids["a4"],
        _t("2026-02-03 09:00"),
        _t("2026-02-03 15:00"),
        steps=[
            (_t("2026-02-03 09:00"), _t("2026-02-03 10:00")),
            (_t("2026-02-03 10:00"), _t("2026-02-03 15:00")),
        ],
    )
    ids["a5"] = create(world, "rep", 8, submit=True)
    act(world, "manager", "request_changes", ids["a5"], "Shorter term, please.")
    _set_times(
        app,
        ids["a5"],
        _t("2026-02-10 09:00"),
        steps=[(_t("2026-02-10 09:00"), _t("2026-02-10 10:00"))],
        decisions=[_t("2026-02-10 10:00")],
    )
    ids["a6"] = create(world, "rep", 10, submit=True)
    act(world, "rep", "recall", ids["a6"])
    _set_times(
        app,
        ids["a6"],
        _t("2026-02-11 11:00"),
        events=("approval.recalled", _t("2026-02-11 12:00")),
    )
    ids["a7"] = create(world, "rep", 20, submit=True)
    with app.app_context():
        two_days = datetime.now(UTC) - timedelta(days=2, hours=1)
    _set_times(app, ids["a7"], two_days, steps=[(two_days, None)])
    ids["a8"] = create(world, "rep2", 50, submit=True, currency="EUR")
    for who in ("manager", "vp", "cfo"):
        act(world, who, "approve", ids["a8"])
    _set_times(app, ids["a8"], _t("2026-01-20 09:00"), _t("2026-01-20 10:00"))
    return ids


@pytest.fixture
def history(world):
    return build_history(world)


def _get(api, query: str = PERIOD, key=None):
    response = api("GET", f"/v2/insights?{query}", **({"headers": bearer(key)} if key else {}))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


# --- every figure, by hand -----------------------------------------------------------------------


def test_discount_given_by_month_and_by_week(api, world, history):
    figures = _get(api, PERIOD + "&group_by=month&currency=USD")
    assert figures["currency"] == "USD"
    assert figures["period"] == {"start": "2026-01-05", "end": "2026-02-28", "group_by": "month"}
    assert figures["scope"] == "organization"
    discount = figures["discount"]
    assert (discount["approved"], discount["list_amount"], discount["net_amount"]) == (
        3,
        85_000,
        76_000,
    )
    assert (discount["discount_amount"], discount["discount_percent"]) == (9_000, 10.59)
    assert discount["series"] == [
        {
            "start": "2026-01-05",
            "end": "2026-01-31",
            "approved": 2,
            "list_amount": 60_000,
            "net_amount": 53_400,
            "discount_amount": 6_600,
            "discount_percent": 11.0,
        },
        {
            "start": "2026-02-01",
            "end": "2026-02-28",
            "approved": 1,
            "list_amount": 25_000,
            "net_amount": 22_600,
            "discount_amount": 2_400,
            "discount_percent": 9.6,
        },
    ]
    weeks = _get(api, PERIOD)["discount"]["series"]
    assert [(w["start"], w["end"], w["approved"]) for w in weeks] == [
        ("2026-01-05", "2026-01-11", 1),
        ("2026-01-12", "2026-01-18", 1),
        ("2026-01-19", "2026-01-25", 0),
        ("2026-01-26", "2026-02-01", 0),
        ("2026-02-02", "2026-02-08", 1),
        ("2026-02-09", "2026-02-15", 0),
        ("2026-02-16", "2026-02-22", 0),
        ("2026-02-23", "2026-02-28", 0),
    ]


def test_depth_bands_keep_catalog_and_custom_lines_apart(api, history):
    depth = _get(api)["depth"]
    assert (depth["catalog_lines"], depth["custom_lines"]) == (4, 1)
    bands = {
        band["label"]: (band["catalog_lines"], band["custom_lines"]) for band in depth["bands"]
    }
    assert list(bands)[:3] == ["0–5 %", "5–10 %", "10–15 %"]
    assert list(bands)[-1] == "50 % +"
    assert len(bands) == 11
    assert {label: counts for label, counts in bands.items() if counts != (0, 0)} == {
        "0–5 %": (1, 1),
        "10–15 %": (2, 0),
        "20–25 %": (1, 0),
    }


def test_speed_overall_per_level_and_pending_now(api, history):
    speed = _get(api)["speed"]
    # People decided a1 (26 h), a3 (4 h), a4 (6 h); a2 was approved at once.
    assert (speed["decided"], speed["median_seconds"], speed["p90_seconds"]) == (
        3,
        6 * 3600,
        26 * 3600,
    )
    assert speed["levels"] == [
        {
            "level": "Manager",
            "rank": 1,
            "steps": 3,
            "median_seconds": 2 * 3600,
            "p90_seconds": 4 * 3600,
        },
        {"level": "VP", "rank": 2, "steps": 2, "median_seconds": 5 * 3600, "p90_seconds": 86400},
    ]
    pending = speed["pending"]
    assert pending["count"] == 1
    assert {age["label"]: age["count"] for age in pending["ages"]} == {
        "under 1 day": 0,
        "1–3 days": 1,
        "3–7 days": 0,
        "7–14 days": 0,
        "14–30 days": 0,
        "30 days +": 0,
    }
    (oldest,) = pending["oldest"]
    assert (oldest["id"], oldest["level"]) == (history["a7"], "Manager")
    assert 2 * 86400 + 3600 <= oldest["age_seconds"] < 2 * 86400 + 3700


def test_outcomes_counts_rates_and_the_auto_approved_share(api, history):
    assert _get(api)["outcomes"] == {
        "approved": 3,
        "rejected": 1,
        "changes_requested": 1,
        "recalled": 1,
        "total": 6,
        "approved_rate": 50.0,
        "rejected_rate": 16.67,
        "changes_requested_rate": 16.67,
        "recalled_rate": 16.67,
        "auto_approved": 1,
        "auto_approved_share": 33.33,
    }


def test_top_requesters_and_products(api, world, history):
    figures = _get(api)
    rep = {
        "member": world.people["rep"],
        "name": "rep@acme.example",
        "approved": 2,
        "list_amount": 65_000,
        "discount_amount": 8_400,
        "discount_percent": 12.92,
    }
    rep2 = {
        "member": world.people["rep2"],
        "name": "rep2@acme.example",
        "approved": 1,
        "list_amount": 20_000,
        "discount_amount": 600,
        "discount_percent": 3.0,
    }
    assert figures["top_requesters_by_discount"] == [rep, rep2]
    assert figures["top_requesters_by_count"] == [rep, rep2]
    assert _get(api, PERIOD + "&top=1")["top_requesters_by_count"] == [rep]
    assert figures["top_products"] == [
        {
            "product": world.products["SEAT"],
            "sku": "SEAT",
            "name": "Seat, annual",
            "lines": 4,
            "quantity": 8,
            "list_amount": 80_000,
            "discount_amount": 9_000,
            "discount_percent": 11.25,
        }
    ]


def test_filters_by_requester_level_and_product(api, world, history):
    rep = _get(api, PERIOD + f"&requested_by={world.people['rep']}")
    assert rep["discount"]["approved"] == 2
    assert rep["filters"]["requested_by"] == world.people["rep"]
    assert rep["outcomes"]["rejected"] == 0
    assert rep["speed"]["pending"]["count"] == 1
    vp = _get(api, PERIOD + f"&approval_level={world.levels['VP']}")
    # The VP level was the one required by a1 (approved) and a7 (pending); a4 needed the CFO.
    assert (vp["discount"]["approved"], vp["outcomes"]["rejected"]) == (1, 0)
    assert vp["speed"]["pending"]["count"] == 1
    cfo = _get(api, PERIOD + f"&approval_level={world.levels['CFO']}")
    assert (cfo["discount"]["approved"], cfo["outcomes"]["rejected"]) == (0, 1)
    license_only = _get(api, PERIOD + f"&product={world.products['LICENSE']}")
    assert license_only["discount"]["approved"] == 0
    assert license_only["depth"]["catalog_lines"] == 0
    seat = _get(api, PERIOD + f"&product={world.products['SEAT']}")
    assert seat["depth"] == {**_get(api)["depth"], "custom_lines": 0} | {
        "bands": [{**band, "custom_lines": 0} for band in _get(api)["depth"]["bands"]]
    }


# --- edge cases ---------------------------------------------------------------------------------


def test_no_data_at_all(api, world):
    figures = _get(api)
    assert figures["discount"]["approved"] == 0
    assert figures["discount"]["discount_percent"] == 0.0
    assert len(figures["discount"]["series"]) == 8
    assert figures["speed"]["median_seconds"] is None
    assert figures["speed"]["levels"] == []
    assert figures["speed"]["pending"] == {**figures["speed"]["pending"], "count": 0, "oldest": []}
    assert figures["outcomes"]["total"] == 0
    assert figures["outcomes"]["approved_rate"] == 0.0
    assert figures["top_requesters_by_discount"] == figures["top_products"] == []
    # With no request at all, the currency is USD until the first one.
    assert _get(api, "")["currency"] == "USD"


def test_one_request(app, api, world):
    approval = create(world, "rep", 20, submit=True)
    act(world, "manager", "approve", approval)
    act(world, "vp", "approve", approval)
    _set_times(
        app,
        approval,
        _t("2026-01-05 09:00"),
        _t("2026-01-06 11:00"),
        steps=[
            (_t("2026-01-05 09:00"), _t("2026-01-05 11:00")),
            (_t("2026-01-05 11:00"), _t("2026-01-06 11:00")),
        ],
    )
    speed = _get(api)["speed"]
    assert (speed["decided"], speed["median_seconds"], speed["p90_seconds"]) == (1, 93600, 93600)
    assert [(lv["median_seconds"], lv["p90_seconds"]) for lv in speed["levels"]] == [
        (7200, 7200),
        (86400, 86400),
    ]


def test_a_period_with_only_pending_requests(app, api, world):
    approval = create(world, "rep", 20, submit=True)
    _set_times(app, approval, _t("2026-01-10 09:00"))
    figures = _get(api)
    assert figures["discount"]["approved"] == 0
    assert figures["outcomes"]["total"] == 0
    assert figures["speed"]["decided"] == 0
    assert figures["speed"]["pending"]["count"] == 1
    assert figures["speed"]["pending"]["ages"][-1]["count"] == 1  # 30 days and more


def test_currencies_are_never_added_together(api, history):
    euro = _get(api, PERIOD + "&currency=eur")
    assert euro["currency"] == "EUR"
    assert (euro["discount"]["approved"], euro["discount"]["list_amount"]) == (1, 20_000)
    assert euro["discount"]["discount_percent"] == 50.0
    assert euro["depth"]["bands"][-1]["catalog_lines"] == 1
    assert [level["level"] for level in euro["speed"]["levels"]] == ["Manager", "VP", "CFO"]
    assert euro["outcomes"]["approved"] == 1
    # Without a currency: the newest request's (a7, USD).
    assert _get(api)["currency"] == "USD"


def test_a_deleted_level_keeps_its_steps_under_the_name_they_were_routed_by(api, world, history):
    """Members are never deleted (their requests and decisions name them); a level can be,
    and the steps decided at it keep counting under the name frozen at routing."""
    from discountflow.approvals import levels

    with world.app.app_context():
        db.session.execute(
            update(Step).where(Step.approval_id == history["a7"]).values(approval_level_id=None)
        )
        db.session.commit()
        vp = world.levels["VP"]
        # a7 waits on a VP route: recall it, then the level can go.
        act(world, "rep", "recall", history["a7"])
        levels.delete_level(world.actor("admin"), vp)
    speed = _get(api)["speed"]
    assert [level["level"] for level in speed["levels"]] == ["Manager", "VP"]
    refused = api("GET", f"/v2/insights?approval_level={vp}")
    assert refused.status_code == 400


# --- who sees what -----------------------------------------------------------------------------


def _as_member(world, who: str, query: str = PERIOD):
    from discountflow.insights import services
    from discountflow.insights.schemas import InsightsQuery

    params = dict(part.split("=") for part in query.split("&") if part)
    with world.app.app_context():
        return services.insights(world.actor(who), InsightsQuery.model_validate(params)).model_dump(
            mode="json"
        )


def test_a_member_sees_their_own_requests(world, history):
    rep = _as_member(world, "rep")
    assert rep["scope"] == "own"
    assert rep["discount"]["approved"] == 2  # a1, a3 — not rep2's a2
    assert [p["name"] for p in rep["top_requesters_by_count"]] == ["rep@acme.example"]
    assert rep["outcomes"]["rejected"] == 0  # a4 is rep2's
    assert rep["outcomes"]["recalled"] == 1
    rep2 = _as_member(world, "rep2")
    assert (rep2["discount"]["approved"], rep2["outcomes"]["rejected"]) == (1, 1)
    assert rep2["speed"]["pending"]["count"] == 0


def test_an_approver_also_sees_the_requests_they_decided_a_step_of(world, history):
    vp = _as_member(world, "vp")  # decided steps of a1 and a4
    assert vp["scope"] == "own"
    assert (vp["discount"]["approved"], vp["outcomes"]["rejected"]) == (1, 1)
    assert vp["speed"]["decided"] == 2
    cfo = _as_member(world, "cfo")  # decided only a step of the EUR request
    assert cfo["discount"]["approved"] == 0
    assert _as_member(world, "cfo", PERIOD + "&currency=EUR")["discount"]["approved"] == 1


def test_admins_and_keys_see_the_whole_organization(api, world, history):
    assert _as_member(world, "admin")["discount"]["approved"] == 3
    assert _as_member(world, "owner")["scope"] == "organization"
    read_only = _get(api, PERIOD, key=world.read_only_key)
    assert read_only == _get(api)


def test_another_organization_is_invisible(app, client, api, world, history):
    other = build_world(app, "globex")
    build_history(other)
    mine = _get(api)
    theirs = client.get(f"/v2/insights?{PERIOD}", headers=bearer(other.key)).get_json()
    assert mine["discount"] == theirs["discount"]  # the same history, counted apart
    assert mine["top_products"][0]["product"] != theirs["top_products"][0]["product"]
    for name, value in (
        ("requested_by", other.people["rep"]),
        ("approval_level", other.levels["VP"]),
        ("product", other.products["SEAT"]),
    ):
        refused = api("GET", f"/v2/insights?{name}={value}")
        assert refused.status_code == 400
        assert refused.get_json()["error"] == "parameter_invalid"
        assert refused.get_json()["param"] == name


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("start=2026-13-01", "start"),
        ("start=2026-02-30", "start"),
        ("start=1700000000", "start"),
        ("start=-5", "start"),
        ("start=0001-01-01&end=0001-01-02", "start"),
        ("end=9999-12-31", "end"),
        ("start=2026-02-01&end=2026-01-01", "end"),
        ("start=2020-01-01&end=2026-01-01", "end"),  # more than 1,096 days
        ("start=2026-01-01", None),  # …and 90 days from then is fine, but see below
        ("group_by=day", "group_by"),
        ("group_by=" + "week" * 5000, None),
        ("currency=XXX", "currency"),
        ("currency=USD%27%20OR%201%3D1--", "currency"),
        ("top=0", "top"),
        ("top=100000000000000000000", "top"),
        ("requested_by=usr_nobody", "requested_by"),
        ("requested_by=%00", "requested_by"),
        ("approval_level=" + "x" * 40, "approval_level"),
        ("product=prd_nope", "product"),
        ("sort=desc", "sort"),
    ],
)
def test_bad_parameters_answer_400_in_the_documented_shape(api, world, query, param):
    response = api("GET", f"/v2/insights?{query}")
    if query == "start=2026-01-01":
        assert response.status_code == 200
        assert response.get_json()["period"]["end"] == "2026-03-31"
        return
    if query.startswith("group_by=weekweek"):
        assert response.status_code in (400, 414)
        return
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["error"] == "parameter_invalid"
    assert set(body) <= {"error", "message", "param"}
    if param:
        assert body["param"] == param


def test_a_period_given_by_its_start_alone_is_bounded_too(api, world):
    response = api("GET", "/v2/insights?end=2026-01-01&start=2022-12-31")
    assert response.status_code == 400


# --- the dashboard -----------------------------------------------------------------------------


def _page_tables(html: str) -> dict[str, list[list[str]]]:
    found = {}
    for name, body in re.findall(
        r'<section class="card chart" id="([^"]+)".*?<tbody>(.*?)</tbody>', html, re.S
    ):
        rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
        found[name] = [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S) for row in rows]
    return found


def test_the_page_shows_charts_tables_and_the_same_numbers_as_the_api(client, api, world, history):
    sign_in(client, "admin@acme.example")
    page = client.get(f"/insights?{PERIOD}&group_by=month&currency=USD")
    assert page.status_code == 200
    html = page.text
    assert 'aria-current="page">Insights</a>' in html
    assert html.count('src="data:image/svg+xml;base64,') == 8
    assert html.count("<summary>Show table</summary>") == 8
    assert html.count(">Download CSV</a>") == 8
    figures = _get(api, PERIOD + "&group_by=month&currency=USD")
    tables = _page_tables(html)
    assert tables["discount"] == [
        [p["start"], p["end"], str(p["approved"])]
        + [f"{p[k] / 100:.2f}" for k in ("list_amount", "net_amount", "discount_amount")]
        + [str(p["discount_percent"])]
        for p in figures["discount"]["series"]
    ]
    assert tables["depth"] == [
        [b["label"], str(b["catalog_lines"]), str(b["custom_lines"])]
        for b in figures["depth"]["bands"]
    ]
    assert tables["speed"][0][1:] == ["3", "6.0", "26.0"]
    assert tables["outcomes"][0] == ["Approved", "3", "50.0"]
    # The chart is an SVG with its title and axis titles.
    import base64

    first = re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', html).group(1)
    svg = base64.b64decode(first).decode()
    assert "Discount given by month (USD)" in svg and "Amount (USD)" in svg
    assert not re.search(r"<script[^>]*href", svg)  # nothing fetched (and no script runs in
    # an <img>)


def test_filters_live_in_the_query_string_and_bad_ones_are_a_400_page(client, world, history):
    sign_in(client, "admin@acme.example")
    page = client.get(f"/insights?{PERIOD}&requested_by={world.people['rep2']}")
    assert page.status_code == 200
    assert f'<option value="{world.people["rep2"]}" selected>' in page.text
    assert client.get("/insights?start=yesterday").status_code == 400
    assert client.get("/insights?currency=ZZZ").status_code == 400


def test_a_member_sees_the_page_for_their_own_requests(client, world, history):
    sign_in(client, "rep@acme.example")
    page = client.get(f"/insights?{PERIOD}")
    assert page.status_code == 200
    assert "your own requests" in page.text
    assert 'id="requested_by"' not in page.text  # no one else to pick


def test_each_chart_downloads_its_table_as_csv(client, api, world, history):
    sign_in(client, "admin@acme.example")
    export = client.get(f"/insights/discount.csv?{PERIOD}&group_by=month")
    assert export.status_code == 200
    assert export.mimetype == "text/csv"
    assert "attachment" in export.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(export.text)))
    assert rows[0][:3] == ["Month from", "To", "Approved"]
    assert rows[1] == ["2026-01-05", "2026-01-31", "2", "600.00", "534.00", "66.00", "11.0"]
    for name in ("depth", "speed", "pending", "outcomes", "products"):
        assert client.get(f"/insights/{name}.csv?{PERIOD}").status_code == 200
    assert client.get(f"/insights/requesters-by-count.csv?{PERIOD}").status_code == 200
    assert client.get("/insights/nope.csv").status_code == 404
    assert client.get("/insights/discount.csv?top=0").status_code == 400


def test_csv_cells_a_spreadsheet_would_run_are_quoted(client, world, history):
    with world.app.app_context():
        rep = db.session.get(User, world.people["rep"])
        rep.name = '=HYPERLINK("http://evil.example","click")'
        db.session.commit()
    sign_in(client, "admin@acme.example")
    export = client.get(f"/insights/requesters-by-discount.csv?{PERIOD}")
    rows = list(csv.reader(io.StringIO(export.text)))
    assert rows[1][0] == '\'=HYPERLINK("http://evil.example","click")'
    page = client.get(f"/insights?{PERIOD}")
    assert "=HYPERLINK(&#34;http://evil.example&#34;" in page.text  # escaped on the page


# --- REST = GraphQL = the page -----------------------------------------------------------------


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _selection(model) -> str:
    """Every field of an Out model as a GraphQL selection (lists: ``first: 100``)."""
    from typing import get_args, get_origin

    from pydantic import BaseModel

    parts = []
    for name, field in model.model_fields.items():
        if name == "object":
            continue
        annotation = field.annotation
        if get_origin(annotation) is list:
            (item,) = get_args(annotation)
            parts.append(f"{_camel(name)}(first: 100) {{ {_selection(item)} }}")
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            parts.append(f"{_camel(name)} {{ {_selection(annotation)} }}")
        else:
            parts.append(_camel(name))
    return " ".join(parts)


def _snake(value):
    if isinstance(value, dict):
        return {re.sub(r"([A-Z])", r"_\1", k).lower(): _snake(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake(v) for v in value]
    return value


def test_rest_graphql_and_the_page_give_the_same_numbers(client, api, world, history):
    from discountflow.insights.schemas import InsightsOut

    from .test_graphql import gql

    arguments = (
        f'start: "2026-01-05", end: "2026-02-28", groupBy: "month", currency: "USD", '
        f'requestedBy: "{world.people["rep"]}"'
    )
    document = f"{{ insights({arguments}) {{ {_selection(InsightsOut)} }} }}"
    answer = gql(client, world.read_only_key, document)
    assert answer.status_code == 200, answer.get_json()
    # Its lists, and the 3,000 its period's rows count for (graphql_limits.AGGREGATES).
    assert answer.get_json()["extensions"]["cost"]["requested"] >= 3_700
    graphql = _snake(answer.get_json()["data"]["insights"])
    rest = _get(api, PERIOD + f"&group_by=month&currency=USD&requested_by={world.people['rep']}")
    rest = {k: v for k, v in rest.items() if k != "object"}
    rest["top_requesters_by_discount"] = rest["top_requesters_by_discount"][:100]
    assert graphql == rest
    sign_in(client, "admin@acme.example")
    page = client.get(f"/insights?{PERIOD}&group_by=month&requested_by={world.people['rep']}")
    tables = _page_tables(page.text)
    assert [row[2] for row in tables["discount"]] == [
        str(p["approved"]) for p in graphql["discount"]["series"]
    ]
    assert tables["requesters-by-discount"][0][0] == "rep@acme.example"


def test_graphql_refuses_bad_arguments_with_the_rest_codes(client, world):
    from .test_graphql import gql

    for arguments, param in (
        ('start: "2026-02-31"', "start"),
        ('groupBy: "day"', "groupBy"),
        ('currency: "EURO"', "currency"),
        ('requestedBy: "usr_nope"', "requested_by"),
    ):
        answer = gql(client, world.key, f"{{ insights({arguments}) {{ currency }} }}").get_json()
        error = answer["errors"][0]["extensions"]
        assert error["code"] == "parameter_invalid", answer
        assert error["param"] == param


def test_the_demo_gives_every_chart_something_to_show(client, runner):
    from .test_cli import key_from

    key = key_from(runner.invoke(args=["demo"]).output)
    figures = client.get("/v2/insights?group_by=month", headers=bearer(key)).get_json()
    assert figures["currency"] == "USD"
    months = [point for point in figures["discount"]["series"] if point["approved"]]
    assert len(months) >= 4
    depth = figures["depth"]
    assert sum(1 for band in depth["bands"] if band["catalog_lines"]) >= 5
    assert depth["custom_lines"] >= 2
    speed = figures["speed"]
    assert speed["decided"] >= 8 and speed["median_seconds"] > 3600
    assert [level["rank"] for level in speed["levels"]] == [1, 2, 3]
    assert speed["pending"]["count"] >= 1
    outcomes = figures["outcomes"]
    assert all(outcomes[name] for name in ("approved", "rejected", "changes_requested", "recalled"))
    assert outcomes["auto_approved"] >= 1
    assert len(figures["top_requesters_by_discount"]) == 3
    assert len(figures["top_products"]) >= 3
    euro = client.get("/v2/insights?currency=EUR", headers=bearer(key)).get_json()
    assert euro["discount"]["approved"] >= 1


def test_one_graphql_document_cannot_ask_for_insights_twice(client, world):
    """Each insights field adds up a whole period: two of them under aliases are refused before
    anything runs, as any query over the cost limit is."""
    from .test_graphql import gql

    one = gql(client, world.read_only_key, "{ insights { currency } }")
    assert one.status_code == 200
    assert one.get_json()["extensions"]["cost"] == {"requested": 3_000}
    twice = gql(
        client, world.read_only_key, "{ a: insights { currency } b: insights { currency } }"
    )
    assert twice.status_code == 400
    (error,) = twice.get_json()["errors"]
    assert error["extensions"] == {"code": "query_too_complex", "cost": 6_000, "limit": 5_000}
