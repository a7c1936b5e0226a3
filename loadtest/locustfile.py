"""DiscountFlow traffic as a real deployment sees it (Locust; started by ``loadtest/run.py``).

The mix. Users are spread by these weights (Locust's ``weight``), after the fixed ones:

=====================  ======  ==================================================================
client                 share   what it does (each user its own organization; ~0.5-1.5 req/s each)
=====================  ======  ==================================================================
``PollingIntegration``  6/19   ``GET /v2/approvals`` (status filters, next page) and
                               ``GET /v2/approvals/{id}`` with the full-access ``sk_`` key
``ReadOnlyPoller``      4/19   the same with the read-only ``rk_`` key
``WritingIntegration``  4/19   ``POST /v2/approvals`` with an ``Idempotency-Key`` (a draft or
                               ``"submit": true``), line items by the seed's SKUs (SEAT-PRO,
                               SEAT-BASIC, SUPPORT-GOLD, ONBOARDING) at 0-35 % off; one in four
                               retried with the same key and body (must replay the first answer);
                               drafts submitted (``POST …/submit``) and read back
``GraphQLIntegration``  3/19   ``POST /v2/graphql``: ``approvals`` and ``approval`` queries
                               (``rk_`` and ``sk_``), ``createApproval`` mutations with an
                               ``Idempotency-Key`` (one in five retried)
``DashboardUser``       2/19   signs in at ``/sign-in`` (organization, email, password, CSRF
                               token), browses Inbox, Approvals (filtered) and approval pages,
                               now and then signs out and in again
``ApiApprover``         fixed  one per decider organization: finds approvals awaiting the owner
                               (``awaiting_decision_by``) that the rep asked for, approves (4 in
                               5) or rejects them with the organization's key — the key counts
                               as the owner, who neither created nor submitted them (four eyes)
``InvalidKeyClient``    1      a trickle (one request every 4 s) of invalid keys: malformed,
                               unknown id, other environment, missing, and — one in five — a
                               real lookup id with a wrong secret (the only kind that costs
                               bcrypt and counts against ``AUTH_FAILURE_LIMIT``, 20/min per
                               address); every one must get the documented 401
``OverBudgetClient``    1      one key, used by nothing else, sending ``GET /v2/me`` at 15/s —
                               900/min against the 500/min staging budget: 2xx until the budget
                               is spent, then 429 with ``Retry-After``
=====================  ======  ==================================================================

Each key stays inside its budget: every weighted user takes its own organization (the run seeds
at least as many as there are users), and none sends more than ~2 requests a second (~120 a
minute, a quarter of 500). Every POST carries an ``Idempotency-Key``; after a 5xx or no answer
the clients retry it as a careful integration does (same key and body, after ``Retry-After``).

What every client saw goes to ``$LOADTEST_RECORDS/records-<pid>.jsonl`` (``loadtest/records.py``).
The seed's manifest (keys, people, SKUs, approvals to decide) is ``$LOADTEST_MANIFEST``.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, constant_throughput, events, task
from locust.contrib.fasthttp import ResponseContextManager

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadtest.records import RecordWriter, digest  # noqa: E402

MANIFEST: dict[str, Any] = json.loads(Path(os.environ["LOADTEST_MANIFEST"]).read_text())
RECORDS = RecordWriter(Path(os.environ["LOADTEST_RECORDS"]))
ORGANIZATIONS = MANIFEST["organizations"]
SHARED = [org for org in ORGANIZATIONS if org["role"] == "shared"]
DECIDERS = [org for org in ORGANIZATIONS if org["role"] == "decider"]
PRODUCTS = MANIFEST["products"]
INVALID_KEY_BODY = {
    "error": "invalid_api_key",
    "message": "The provided API key is invalid or expired.",
}
CSRF = re.compile(r'name="csrf-token" content="([^"]+)"|name="csrf_token"[^>]*value="([^"]+)"')
APPROVAL_LINK = re.compile(r'href="/approvals/(apr_[0-9A-Za-z]+)"')
DISCOUNTS = (0, 0, 3, 8, 10, 12, 20, 25, 35)  # percent off list: ≤5 % approves at once
# No answer, or a server error: the outcome is unknown, so a careful integration retries with
# the same Idempotency-Key and body (a 503 says when, in Retry-After).
RETRYABLE = (0, 500, 502, 503, 504)
RETRY_ATTEMPTS = 6
SNIPPET = 300

_shared_organizations = itertools.count()
_decider_organizations = itertools.count()


def _next_shared() -> dict[str, Any]:
    return SHARED[next(_shared_organizations) % len(SHARED)]


def _header(response: Any, name: str) -> str | None:
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get(name)
    return None if value is None else str(value)


@events.request.add_listener
def record_request(
    request_type: str,
    name: str,
    response_time: float,
    response_length: int,
    response: Any = None,
    context: dict[str, Any] | None = None,
    exception: Exception | None = None,
    start_time: float | None = None,
    **kwargs: Any,
) -> None:
    """Write one ``req`` record for every request any client made."""
    context = context or {}
    status = int(getattr(response, "status_code", 0) or 0)
    fields: dict[str, Any] = {
        "ts": round(start_time or time.time(), 4),
        "ms": round(response_time or 0.0, 2),
        "m": request_type,
        "n": name,
        "st": status,
        "ok": exception is None,
        "c": context.get("client", ""),
        "key": context.get("key", ""),
    }
    if _header(response, "Retry-After") is not None:
        fields["ra"] = True
    if _header(response, "X-RateLimit-Limit") is not None:
        fields["rl"] = True
    if status == 0:
        fields["err"] = str(getattr(response, "error", exception) or "")[:SNIPPET]
    if status >= 500 or exception is not None:
        try:
            fields["body"] = (response.text or "")[:SNIPPET]
        except Exception:  # noqa: BLE001 - an unreadable body is recorded as none
            fields["body"] = ""
    RECORDS.write("req", **fields)


@events.test_stop.add_listener
def _flush(**kwargs: Any) -> None:
    RECORDS.flush()


@events.quitting.add_listener
def _close(**kwargs: Any) -> None:
    RECORDS.close()


class DiscountFlowClient(FastHttpUser):
    """A client of one organization; the base of every client here."""

    abstract = True
    wait_time = between(0.5, 2.5)
    network_timeout = 60.0
    connection_timeout = 10.0
    organization: dict[str, Any]
    key_label = "sk"  # how the records name the key: <slug>/<key_label>
    key_field = "full_key"  # which of the organization's keys it sends

    def context(self) -> dict[str, Any]:
        return {"client": type(self).__name__, "key": self.key_name}

    @property
    def key_name(self) -> str:
        return f"{self.organization['slug']}/{self.key_label}"

    @property
    def key(self) -> str:
        return self.organization[self.key_field]

    def bearer(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    def expect(self, response: ResponseContextManager, *statuses: int) -> bool:
        """Judge an answer: one of ``statuses``, else a failure naming what came."""
        if response.status_code in statuses:
            response.success()
            return True
        head = (response.text or "")[:200] if response.status_code else ""
        response.failure(f"{response.status_code} (expected {statuses}): {head}")
        return False

    def json_of(self, response: ResponseContextManager) -> dict[str, Any]:
        try:
            data = response.json()
        except (ValueError, TypeError):
            return {}
        return data if isinstance(data, dict) else {}

    def idempotent_post(
        self, path: str, body: dict[str, Any], name: str, expected: int
    ) -> tuple[int, str, str]:
        """POST with a new Idempotency-Key; after a 5xx or no answer retry it (same key and
        body, after Retry-After) as a careful integration does, also through ``409
        idempotency_key_in_use`` (the first may still be running). Return the last status, its
        body and the key."""
        idem = f"lt-{uuid.uuid4().hex}"
        headers = {**self.bearer(), "Idempotency-Key": idem}
        status, text = 0, ""
        for attempt in range(RETRY_ATTEMPTS):
            with self.client.post(
                path,
                json=body,
                headers=headers,
                name=name if attempt == 0 else f"{name} (retry after error)",
                catch_response=True,
            ) as response:
                status, text = response.status_code, response.text or ""
                retry_after = _header(response, "Retry-After")
                again = status in RETRYABLE or (
                    attempt > 0 and status == 409 and "idempotency_key_in_use" in text
                )
                if again:
                    response.failure(f"{status} on attempt {attempt + 1}: {text[:120]}")
                else:
                    self.expect(response, expected)
            if not again:
                break
            time.sleep(min(float(retry_after or 1), 5.0) * (1 + random.random() / 2))
        if status == 409 and "idempotency_key_in_use" in text:
            RECORDS.write("stuck", idem=idem, path=path, ts=time.time())
        return status, text, idem


# --- integrations polling --------------------------------------------------------------------


class PollingIntegration(DiscountFlowClient):
    """Polls its organization's approvals with the full-access key."""

    weight = 6

    def on_start(self) -> None:
        self.organization = _next_shared()
        self.seen: list[str] = []

    @task(3)
    def list_approvals(self) -> None:
        query = random.choice(
            [
                "?limit=20",
                "?limit=5",
                "?limit=10&status=pending",
                "?status=approved&status=pending",
                "",
            ]
        )
        with self.client.get(
            "/v2/approvals" + query,
            headers=self.bearer(),
            name="/v2/approvals",
            catch_response=True,
        ) as response:
            if not self.expect(response, 200):
                return
            page = self.json_of(response)
        ids = [item["id"] for item in page.get("data", []) if isinstance(item, dict)]
        self.seen = (ids + self.seen)[:50]
        if page.get("has_more") and ids and random.random() < 0.3:
            with self.client.get(
                f"/v2/approvals?limit=5&starting_after={ids[-1]}",
                headers=self.bearer(),
                name="/v2/approvals?starting_after",
                catch_response=True,
            ) as response:
                self.expect(response, 200)

    @task(2)
    def get_approval(self) -> None:
        if not self.seen:
            return self.list_approvals()
        approval_id = random.choice(self.seen)
        with self.client.get(
            f"/v2/approvals/{approval_id}",
            headers=self.bearer(),
            name="/v2/approvals/{id}",
            catch_response=True,
        ) as response:
            self.expect(response, 200)


class ReadOnlyPoller(PollingIntegration):
    """The same polling with the organization's read-only key."""

    weight = 4
    key_label = "rk"
    key_field = "read_key"


# --- integrations writing --------------------------------------------------------------------


def request_body(title: str, submit: bool) -> dict[str, Any]:
    """An approval request on the seed's price book (list prices come from the book)."""
    currency = random.choice(("USD", "USD", "EUR"))
    lines = []
    for product in random.sample(PRODUCTS, random.randint(1, 3)):
        price = product["prices"][currency]
        off = random.choice(DISCOUNTS)
        lines.append(
            {
                "sku": product["sku"],
                "quantity": random.randint(1, 60),
                "unit_price": price * (100 - off) // 100,
            }
        )
    return {
        "title": title,
        "customer": random.choice(("Acme Corp", "Globex", "Initech", "Umbrella", "Hooli")),
        "currency": currency,
        "deal_reference": f"CRM-{random.randint(10000, 99999)}",
        "line_items": lines,
        "submit": submit,
    }


class WritingIntegration(DiscountFlowClient):
    """Creates and submits approvals with Idempotency-Keys; retries some on purpose."""

    weight = 4
    retry_share = 0.25

    def on_start(self) -> None:
        self.organization = _next_shared()

    def acknowledged(self, kind: str, **fields: Any) -> None:
        RECORDS.write(
            kind,
            org=self.organization["id"],
            slug=self.organization["slug"],
            ts=time.time(),
            **fields,
        )

    @task
    def create_and_submit(self) -> None:
        title = f"Load {uuid.uuid4().hex[:12]}"
        submit = random.random() < 0.7
        body = request_body(title, submit)
        status, text, idem = self.idempotent_post(
            "/v2/approvals", body, "/v2/approvals [POST]", 201
        )
        if status != 201:
            if status in RETRYABLE or status == 409:
                RECORDS.write("unknown", action="create", idem=idem, title=title, ts=time.time())
            return
        created = json.loads(text)
        self.acknowledged(
            "created", id=created["id"], via="rest", title=title, status=created["status"]
        )
        if random.random() < self.retry_share:
            self.replay("/v2/approvals", body, idem, status, text, "/v2/approvals [POST retry]")
        if created["status"] == "draft":
            status, text, idem = self.idempotent_post(
                f"/v2/approvals/{created['id']}/submit", {}, "/v2/approvals/{id}/submit", 200
            )
            if status == 200:
                self.acknowledged(
                    "status", id=created["id"], status=json.loads(text)["status"], action="submit"
                )
            elif status in RETRYABLE or status == 409:
                RECORDS.write("unknown", action="submit", id=created["id"], idem=idem)
        with self.client.get(
            f"/v2/approvals/{created['id']}",
            headers=self.bearer(),
            name="/v2/approvals/{id}",
            catch_response=True,
        ) as response:
            self.expect(response, 200)

    def replay(
        self, path: str, body: dict[str, Any], idem: str, status: int, text: str, name: str
    ) -> None:
        """Send the same request with the same key again: it must replay the first answer."""
        headers = {**self.bearer(), "Idempotency-Key": idem}
        with self.client.post(
            path, json=body, headers=headers, name=name, catch_response=True
        ) as response:
            again, again_text = response.status_code, response.text or ""
            replayed = _header(response, "Idempotent-Replayed") or ""
            if again in RETRYABLE:
                response.failure(f"{again} on a deliberate retry")
            elif again == status and again_text == text and replayed == "true":
                response.success()
            else:
                response.failure(f"retry answered {again} (first {status}), replayed={replayed!r}")
        if again in RETRYABLE:
            return  # the retry itself got no answer: nothing to compare
        RECORDS.write(
            "idem",
            via="graphql" if path.endswith("graphql") else "rest",
            idem=idem,
            slug=self.organization["slug"],
            first={"st": status, "sha": digest(text), "head": text[:120]},
            replay={
                "st": again,
                "sha": digest(again_text),
                "head": again_text[:120],
                "replayed": replayed,
            },
            ts=time.time(),
        )


# --- GraphQL ---------------------------------------------------------------------------------

APPROVALS_QUERY = """
query Poll($status: [ApprovalStatus!]) {
  me { id }
  approvals(first: 10, status: $status) {
    edges { node { id title amount currency status steps(first: 5) { levelName status } } }
    pageInfo { hasNextPage endCursor }
  }
}"""
APPROVAL_QUERY = """
query One($id: ID!) {
  approval(id: $id) { id status lineItems(first: 10) { sku quantity unitPrice } }
}"""
CREATE_MUTATION = """
mutation Create($input: ApprovalCreateInput!) { createApproval(input: $input) { id status } }"""


class GraphQLIntegration(WritingIntegration):
    """Queries with both keys and creates approvals through GraphQL mutations."""

    weight = 3
    retry_share = 0.2

    def on_start(self) -> None:
        self.organization = _next_shared()
        self.seen: list[str] = []

    def graphql(self, query: str, variables: dict[str, Any], name: str, key: str) -> dict:
        with self.client.post(
            "/v2/graphql",
            json={"query": query, "variables": variables},
            headers=self.bearer(key),
            name=name,
            catch_response=True,
        ) as response:
            if not self.expect(response, 200):
                return {}
            answer = self.json_of(response)
            if answer.get("errors"):
                response.failure(f"errors: {json.dumps(answer['errors'])[:200]}")
            return answer

    @task(3)
    def poll(self) -> None:
        key = random.choice((self.organization["full_key"], self.organization["read_key"]))
        status = random.choice((None, ["PENDING"], ["APPROVED", "PENDING"]))
        answer = self.graphql(APPROVALS_QUERY, {"status": status}, "graphql approvals", key)
        edges = ((answer.get("data") or {}).get("approvals") or {}).get("edges") or []
        ids = [edge["node"]["id"] for edge in edges]
        self.seen = (ids + self.seen)[:50]
        if self.seen:
            self.graphql(
                APPROVAL_QUERY,
                {"id": random.choice(self.seen)},
                "graphql approval",
                self.organization["read_key"],
            )

    @task(1)
    def create(self) -> None:
        title = f"GQL {uuid.uuid4().hex[:12]}"
        body = request_body(title, random.random() < 0.7)
        variables = {
            "input": {
                "title": body["title"],
                "customer": body["customer"],
                "currency": body["currency"],
                "dealReference": body["deal_reference"],
                "submit": body["submit"],
                "lineItems": [
                    {"sku": li["sku"], "quantity": li["quantity"], "unitPrice": li["unit_price"]}
                    for li in body["line_items"]
                ],
            }
        }
        payload = {"query": CREATE_MUTATION, "variables": variables}
        status, text, idem = self.idempotent_post(
            "/v2/graphql", payload, "graphql createApproval", 200
        )
        if status != 200:
            if status in RETRYABLE or status == 409:
                RECORDS.write("unknown", action="create", idem=idem, title=title, ts=time.time())
            return
        answer = json.loads(text)
        created = (answer.get("data") or {}).get("createApproval")
        if not created or answer.get("errors"):
            RECORDS.write("note", what="graphql create refused", body=text[:SNIPPET])
            return
        self.acknowledged(
            "created",
            id=created["id"],
            via="graphql",
            title=title,
            status=str(created["status"]).lower(),
        )
        if random.random() < self.retry_share:
            self.replay("/v2/graphql", payload, idem, status, text, "graphql createApproval retry")


# --- approvers through the API ---------------------------------------------------------------


class ApiApprover(DiscountFlowClient):
    """Decides its organization's pending approvals (the rep's) with the organization's key."""

    fixed_count = len(DECIDERS)  # one per decider organization
    wait_time = between(1.5, 3.5)

    def on_start(self) -> None:
        self.organization = DECIDERS[next(_decider_organizations) % len(DECIDERS)]
        people = self.organization["people"]
        self.inbox = (
            f"/v2/approvals?status=pending&awaiting_decision_by={people['owner']}"
            f"&requested_by={people['rep']}&limit=5"
        )

    @task
    def decide(self) -> None:
        with self.client.get(
            self.inbox,
            headers=self.bearer(),
            name="/v2/approvals?awaiting_decision_by",
            catch_response=True,
        ) as response:
            if not self.expect(response, 200):
                return
            waiting = [item["id"] for item in self.json_of(response).get("data", [])]
        if not waiting:
            return
        approval_id = random.choice(waiting)
        approve = random.random() < 0.8
        action = "approve" if approve else "reject"
        body = {"comment": "Fine for this deal." if approve else "Too deep for this account."}
        status, text, idem = self.idempotent_post(
            f"/v2/approvals/{approval_id}/{action}", body, f"/v2/approvals/{{id}}/{action}", 200
        )
        if status == 200:
            RECORDS.write(
                "status",
                id=approval_id,
                org=self.organization["id"],
                slug=self.organization["slug"],
                status=json.loads(text)["status"],
                action=action,
                ts=time.time(),
            )
        elif status in RETRYABLE or status == 409:
            RECORDS.write("unknown", action=action, id=approval_id, idem=idem)


# --- people in the dashboard -----------------------------------------------------------------


class DashboardUser(DiscountFlowClient):
    """Signs in with email and password (and CSRF token) and browses the dashboard."""

    weight = 2
    wait_time = between(1.0, 3.0)
    key_label = "dashboard"

    def on_start(self) -> None:
        self.organization = _next_shared()
        self.person = random.choice(("rep", "manager", "admin"))
        self.token = ""
        self.pages: list[str] = []
        self.sign_in()

    def remember_token(self, page: str) -> None:
        found = CSRF.search(page)
        if found:
            self.token = found.group(1) or found.group(2)
        self.pages = (APPROVAL_LINK.findall(page) + self.pages)[:30]

    def sign_in(self) -> None:
        with self.client.get("/sign-in", name="/sign-in [GET]", catch_response=True) as response:
            if not self.expect(response, 200):
                return
            self.remember_token(response.text or "")
        form = {
            "csrf_token": self.token,
            "organization": self.organization["slug"],
            "email": self.organization["emails"][self.person],
            "password": MANIFEST["password"],
            "next": "",
        }
        with self.client.post(
            "/sign-in",
            data=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            name="/sign-in [POST]",
            catch_response=True,
        ) as response:
            if self.expect(response, 200):  # 303 to the inbox, followed
                self.remember_token(response.text or "")

    def browse(self, path: str, name: str) -> None:
        with self.client.get(path, name=name, catch_response=True) as response:
            if self.expect(response, 200):
                text = response.text or ""
                if 'action="/sign-in"' in text:  # the session ended: sign in again
                    response.failure("signed out unexpectedly")
                    self.sign_in()
                    return
                self.remember_token(text)

    @task(3)
    def inbox(self) -> None:
        self.browse("/inbox", "/inbox")

    @task(3)
    def approvals(self) -> None:
        query = random.choice(("", "?status=pending", "?status=approved", "?customer=Acme"))
        self.browse("/approvals" + query, "/approvals")

    @task(3)
    def approval_page(self) -> None:
        if self.pages:
            self.browse(f"/approvals/{random.choice(self.pages)}", "/approvals/{id} (page)")

    @task(1)
    def sign_out_and_in(self) -> None:
        if not self.token:
            return self.sign_in()
        with self.client.post(
            "/sign-out",
            data={"csrf_token": self.token},
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            name="/sign-out",
            catch_response=True,
        ) as response:
            self.expect(response, 200)  # 303 to /sign-in, followed
        self.sign_in()


# --- the trickle of invalid keys, and the key over its budget --------------------------------


class InvalidKeyClient(DiscountFlowClient):
    """Sends invalid keys now and then; each must get exactly the documented 401."""

    fixed_count = 1
    wait_time = constant_throughput(0.25)  # every 4 s: inside gunicorn's 5 s keep-alive
    key_label = "invalid"

    @property
    def key_name(self) -> str:
        return "invalid"

    def on_start(self) -> None:
        self.organization = {"slug": "invalid"}
        cheap = [k for k in MANIFEST["invalid_keys"] if k["kind"] != "wrong_secret"]
        costly = [k for k in MANIFEST["invalid_keys"] if k["kind"] == "wrong_secret"]
        # One in five costs bcrypt: 3 a minute, well inside the 20 a minute budget.
        self.keys = itertools.cycle(cheap + costly)

    @task
    def try_key(self) -> None:
        presented = next(self.keys)
        headers = {"Authorization": f"Bearer {presented['key']}"} if presented["key"] else {}
        with self.client.get(
            "/v2/approvals",
            headers=headers,
            name=f"/v2/approvals (invalid key: {presented['kind']})",
            catch_response=True,
        ) as response:
            if response.status_code != 401:
                response.failure(f"{response.status_code}, expected 401")
            elif self.json_of(response) != INVALID_KEY_BODY:
                response.failure(f"401 with another body: {(response.text or '')[:120]}")
            elif _header(response, "WWW-Authenticate") != "Bearer":
                response.failure("401 without WWW-Authenticate: Bearer")
            else:
                response.success()


class OverBudgetClient(DiscountFlowClient):
    """One key at 900 requests a minute: the limiter must admit exactly its 500 a minute."""

    fixed_count = 1
    wait_time = constant_throughput(15)
    key_label = "over-budget"

    def on_start(self) -> None:
        self.organization = {"slug": "over-budget", "full_key": MANIFEST["over_budget"]["key"]}

    @property
    def key_name(self) -> str:
        return "over-budget"

    @task
    def me(self) -> None:
        with self.client.get(
            "/v2/me", headers=self.bearer(), name="/v2/me (over budget)", catch_response=True
        ) as response:
            if response.status_code == 429 and _header(response, "Retry-After"):
                response.success()
            else:
                self.expect(response, 200)
