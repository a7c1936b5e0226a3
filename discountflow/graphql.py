"""The GraphQL API at ``/v2/graphql``: the schema assembled from each feature's ``graphql.py``,
served and executed by Strawberry, with REST's contract kept through Strawberry's own hooks.

A request passes the ``/v2`` pipeline first, exactly as a REST request does: its key is
authenticated before anything is parsed (the documented 401), and it counts against the same
per-key budget (``api.py``). Then Strawberry's Flask view runs it, and this module:

* takes ``POST`` with a JSON object of at most 64 KiB (``GET``: 405; another content type:
  415; a batch, which is a JSON array: 400; larger: 413) — refusals in REST's error shape;
* parses the document (at most 2,000 tokens; remembered by its text: ``Documents``), then
  refuses all but exactly one operation, refuses a mutation from a read-only key with REST's
  403 ``read_only_key`` before it is even validated, and honours ``Idempotency-Key`` on a
  mutation as REST does on a POST (``RequestRules``);
* counts its limits (``graphql_limits.QueryLimits``), and only within them has Strawberry
  validate it with the specification's rules and ours — once per document, whatever its
  comments and spacing (``Documents``);
* answers GraphQL's ``{"data", "errors", "extensions"}`` with REST's error codes in
  ``errors[].extensions.code``, the query's cost in ``extensions.cost``, and the status codes
  of the GraphQL-over-HTTP specification (``Endpoint.process_result``).

A refusal meant as an HTTP answer (a ``DomainError`` or an HTTP exception raised before
execution, or the database gone away) is raised again from the view, so that Flask's error
handlers answer it as they answer REST: Strawberry itself turns an exception raised in an
extension's hook into a GraphQL error.

``schema.graphql`` beside this module is the schema as committed (a test fails when the code
drifts from it); it is served at ``/v2/graphql/schema.graphql``, and GraphiQL, from local
files, at ``/v2/graphql/ide`` in staging.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from functools import cache, cached_property, lru_cache, partial
from pathlib import Path
from typing import Any

import click
import orjson
import strawberry
from flask import (
    Blueprint,
    Flask,
    Request,
    Response,
    abort,
    current_app,
    g,
    render_template,
    request,
)
from flask.cli import with_appcontext
from graphql import (
    DocumentNode,
    FieldNode,
    FieldsOnCorrectTypeRule,
    GraphQLError,
    GraphQLSyntaxError,
    MaxIntrospectionDepthRule,
    OperationDefinitionNode,
    OperationType,
    parse,
    print_ast,
)
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from strawberry.extensions import AddValidationRules, DisableIntrospection, SchemaExtension
from strawberry.flask.views import GraphQLView
from strawberry.http import GraphQLHTTPResponse
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionResult
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, UnsupportedMediaType

from . import idempotency
from .api import GRAPHQL_IDE, GRAPHQL_PATH, current_actor, per_key_quota
from .approvals import graphql as approvals
from .audit import graphql as audit
from .auth import graphql as auth
from .auth.keys import prefix_for
from .config import VERSION
from .errors import DomainError, InvalidParameter
from .graphql_base import SCALARS, Context
from .graphql_limits import QueryLimits, syntax_error_extensions
from .insights import graphql as insights
from .notifications import graphql as notifications
from .organizations import graphql as organizations
from .products import graphql as products
from .webhooks import graphql as webhooks

log = logging.getLogger(__name__)

SDL_FILE = Path(__file__).parent / "schema.graphql"
IDE_FOLDER = Path(__file__).parent / "graphiql"
MAX_BODY_BYTES = 64 * 1024
# Documents parsed and validated once per process (integrations send the same few again and
# again); a bound, so that a stream of distinct documents cannot grow the memory.
REMEMBERED_DOCUMENTS = 256
GRAPHQL_RESPONSE = "application/graphql-response+json"
UNEXPECTED = "Internal server error"
# graphql-core's hint at the schema's names, which production keeps to itself.
SUGGESTION = re.compile(r" Did you mean [^?]*\?")
DATABASE_AWAY = (OperationalError, InterfaceError)


# --- the schema --------------------------------------------------------------------------------


class Schema(strawberry.Schema):
    def process_errors(self, errors, execution_context=None) -> None:
        """Log what went wrong unexpectedly (with the request id); refusals are not news."""
        for error in errors:
            if _unexpected(error):
                log.error(
                    "GraphQL resolver failed (request %s) at %s",
                    g.get("request_id"),
                    error.path,
                    exc_info=error.original_error,
                )


class NotOneOperation(GraphQLError):
    """A document of more or fewer than one operation: 400, as a syntax error is."""

    def __init__(self) -> None:
        super().__init__(
            "Send exactly one operation per request.",
            extensions={"code": "parameter_invalid", "param": "query"},
        )


class RequestRules(SchemaExtension):
    """What is decided once the document is parsed, before it is validated: exactly one
    operation, the one named (if any); and for a mutation, the key's write access and its
    ``Idempotency-Key`` (a retry is answered with the first response)."""

    def on_parse(self) -> Iterator[None]:
        yield
        execution = self.execution_context
        document = execution.graphql_document
        if document is None:  # the parser refused it
            return
        operations = [
            definition
            for definition in document.definitions
            if isinstance(definition, OperationDefinitionNode)
        ]
        if len(operations) != 1:
            raise NotOneOperation()
        (operation,) = operations
        if operation.operation is OperationType.MUTATION:
            context: Context = execution.context
            context.actor.require_write()  # a read-only key: 403, before validation
            replayed = idempotency.begin(context.actor.organization_id, context.actor.api_key_id)
            if replayed is not None:
                abort(replayed)  # answered as it was the first time
        named = operation.name.value if operation.name else None
        if execution.operation_name != named:  # (graphql-core's own words)
            raise GraphQLError(f"Unknown operation named '{execution.operation_name}'.")


class Parsed:
    """A parsed document, and its text without comments, commas or spacing (its key to the
    validation's verdict): printed once, when first asked for — not for a document the limits
    refuse."""

    def __init__(self, document: DocumentNode) -> None:
        self.document = document

    @cached_property
    def normalized(self) -> str:
        return print_ast(self.document)


@lru_cache(maxsize=REMEMBERED_DOCUMENTS)
def _parsed(query: str, **options: Any) -> Parsed:
    return Parsed(parse(query, **options))


class Verdicts:
    """The specification's errors of the documents last validated (a bounded LRU), by schema,
    rules and normalized text; with the document they were found in (their locations)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.found: OrderedDict[tuple, tuple[DocumentNode, list[GraphQLError]]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple, document: DocumentNode) -> list[GraphQLError] | None:
        """The errors of this document, if known: a valid document's whatever its text; an
        invalid one's only for the same text (the errors locate it)."""
        with self.lock:
            known = self.found.get(key)
            if known is None:
                return None
            self.found.move_to_end(key)
        found_in, errors = known
        return list(errors) if not errors or found_in is document else None

    def put(self, key: tuple, document: DocumentNode, errors: list[GraphQLError]) -> None:
        with self.lock:
            self.found[key] = (document, list(errors))
            self.found.move_to_end(key)
            while len(self.found) > self.maxsize:
                self.found.popitem(last=False)


VERDICTS = Verdicts(REMEMBERED_DOCUMENTS)


class Documents(SchemaExtension):
    """Each document parsed once per text, and validated once per normalized text: a comment
    or a space more is not a new document to validate (Strawberry's ``ParserCache`` and
    ``ValidationCache`` key both on the exact text)."""

    parsed: Parsed | None = None

    def on_parse(self) -> Iterator[None]:
        execution = self.execution_context
        self.parsed = _parsed(execution.query, **execution.parse_options)
        execution.graphql_document = self.parsed.document
        yield

    def on_validate(self) -> Iterator[None]:
        execution = self.execution_context
        key = None
        if execution.pre_execution_errors is None:  # within the limits (QueryLimits)
            key = (execution.schema, execution.validation_rules, self.parsed.normalized)
            known = VERDICTS.get(key, execution.graphql_document)
            if known is not None:
                execution.pre_execution_errors = known  # (Strawberry skips its validation)
                key = None
        yield
        if key is not None and execution.pre_execution_errors is not None:
            VERDICTS.put(key, execution.graphql_document, execution.pre_execution_errors)


class FieldsWithoutHints(FieldsOnCorrectTypeRule):
    """graphql-core's rule for unknown fields, without its search for names to suggest: in
    production the hint is not shown, and the search is most of the rule's work (a document of
    100 unknown fields: about 60 ms of CPU with it, 7 without)."""

    def enter_field(self, node: FieldNode, *_args: Any) -> None:
        parent = self.context.get_parent_type()
        if parent and not self.context.get_field_def():
            self.report_error(
                GraphQLError(f"Cannot query field '{node.name.value}' on type '{parent}'.", node)
            )


class WithoutHints(SchemaExtension):
    """Production's validation: ``FieldsWithoutHints`` instead of ``FieldsOnCorrectTypeRule``."""

    def on_operation(self) -> Iterator[None]:
        execution = self.execution_context
        execution.validation_rules = tuple(
            FieldsWithoutHints if rule is FieldsOnCorrectTypeRule else rule
            for rule in execution.validation_rules
        )
        yield


def _extensions(environment: str) -> list[Any]:
    """Strawberry's extensions, one of each per request, in the order their hooks run."""
    extensions: list[Any] = [partial(AddValidationRules, [MaxIntrospectionDepthRule])]
    if environment == "production":
        extensions += [DisableIntrospection, WithoutHints]
    return [
        *extensions,
        RequestRules,  # (reads the parsed document once every extension has parsed)
        QueryLimits,  # (before Documents: a document over a limit is not validated)
        Documents,
    ]


@cache
def schema(environment: str = "staging") -> strawberry.Schema:
    """The schema, built once per process from every feature's queries and mutations.

    In production a mistyped name gets no "did you mean" hint: with introspection off, the
    schema is not told piece by piece either (``disable_field_suggestions`` covers fields only,
    ``_formatted`` the rest: arguments, enum values, types and input fields).
    """
    # The type merge_types would make, with the service's version as its description.
    query = strawberry.type(
        type(
            "Query",
            (
                auth.Query,
                organizations.Query,
                approvals.Query,
                products.Query,
                webhooks.Query,
                notifications.Query,
                audit.Query,
                insights.Query,
            ),
            {},
        ),
        description=f"DiscountFlow {VERSION}: discount approvals over GraphQL.",
    )
    mutation = merge_types(
        "Mutation",
        (
            approvals.Mutation,
            products.Mutation,
            webhooks.Mutation,
            notifications.Mutation,
            organizations.Mutation,
        ),
    )
    config = StrawberryConfig(
        scalar_map=SCALARS, disable_field_suggestions=environment == "production"
    )
    return Schema(
        query=query, mutation=mutation, extensions=_extensions(environment), config=config
    )


def sdl() -> str:
    """The schema in the GraphQL schema language, as committed in ``schema.graphql``."""
    return schema().as_str() + "\n"


# --- the endpoint ------------------------------------------------------------------------------

bp = Blueprint("graphql_api", __name__, url_prefix=GRAPHQL_PATH)
per_key_quota(bp)  # REST and GraphQL spend one budget per API key (api.py)


def _refuse_unreadable_body() -> None:
    """Refuse what is not a JSON body of at most 64 KiB before it is read, in REST's shape."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType()
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise RequestEntityTooLarge()
    request.max_content_length = MAX_BODY_BYTES  # also bounds a body sent without a length
    try:
        request.get_data(cache=True).decode()  # (as Strawberry will read it)
    except UnicodeDecodeError as error:
        raise InvalidParameter("The request body is not valid JSON.") from error


def _operation_request(data: str | bytes) -> dict[str, Any]:
    """The request's JSON object — one operation, its variables and name — or a refusal."""
    if isinstance(data, str):
        data = data.removeprefix("\ufeff")  # a byte order mark, as json.loads(bytes) allows
    try:
        body = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise InvalidParameter("The request body is not valid JSON.") from error
    if isinstance(body, list):
        raise InvalidParameter("Send one operation per request: batching is not supported.")
    if not isinstance(body, dict):
        raise InvalidParameter("The request body must be a JSON object.")
    if not isinstance(body.get("query"), str) or not body["query"].strip():
        raise InvalidParameter("Send the GraphQL document as a string in query.", param="query")
    if not isinstance(body.get("variables") or {}, dict):
        raise InvalidParameter("variables must be a JSON object.", param="variables")
    if not isinstance(body.get("operationName") or "", str):
        raise InvalidParameter("operationName must be a string.", param="operationName")
    if not body.get("variables"):
        body["variables"] = None  # empty, whatever its JSON: no variables
    if not isinstance(body.get("extensions"), dict):
        body.pop("extensions", None)  # nothing reads a request's extensions
    return body


def _wants_graphql_response() -> bool:
    """Whether the client asked for the GraphQL-over-HTTP media type (before plain JSON)."""
    if "graphql-response" not in request.headers.get("Accept", ""):
        return False  # (most clients: no need to parse the header)
    accept = request.accept_mimetypes
    named = {value for value, quality in accept if quality > 0}
    return (
        GRAPHQL_RESPONSE in named
        and accept.best_match([GRAPHQL_RESPONSE, "application/json"]) == GRAPHQL_RESPONSE
    )


class Endpoint(GraphQLView):
    """Strawberry's synchronous Flask view, keeping REST's contract (see the module's text).

    Flask makes one per request (``init_every_request``): the response it answers with is
    kept on it between ``get_context`` and ``process_result``.
    """

    methods = ["POST"]  # noqa: RUF012 - Flask's own class attribute

    def __init__(self) -> None:
        environment = current_app.config["DISCOUNTFLOW_ENV"]
        super().__init__(schema=schema(environment), graphql_ide=None, allow_queries_via_get=False)
        self.response: Response | None = None

    def dispatch_request(self):
        _refuse_unreadable_body()
        return super().dispatch_request()

    def decode_json(self, data: str | bytes) -> object:
        return _operation_request(data)

    def encode_json(self, data: object) -> bytes | str:
        # orjson writes a page of 20 approvals in a tenth of the standard library's time
        # (about 40 µs against 400); it refuses an integer beyond 64 bits, which JSON allows.
        try:
            return orjson.dumps(data)
        except TypeError:
            return json.dumps(data, separators=(",", ":"))

    def get_context(self, request: Request, response: Response) -> Context:
        self.response = response
        return Context(actor=current_actor())

    def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        errors = result.errors or []
        for error in errors:
            original = error.original_error
            if isinstance(original, DATABASE_AWAY):
                raise original  # the database is away: 503, as REST answers
            if error.path is None and isinstance(original, DomainError | HTTPException):
                raise original  # refused before execution: REST's answer (RequestRules)
        before_execution = [error for error in errors if error.path is None]
        if any(_unexpected(error) for error in before_execution):
            status, errors = 500, before_execution
        elif any(isinstance(error, GraphQLSyntaxError | NotOneOperation) for error in errors):
            status = 400
        elif before_execution:  # not valid, within the limits, or for the variables given
            status = 422 if _wants_graphql_response() else 400
        else:
            status = 200
        body: GraphQLHTTPResponse = {}
        if status == 200:
            body["data"] = result.data
        if errors:
            hints = current_app.config["DISCOUNTFLOW_ENV"] != "production"
            body["errors"] = [_formatted(error, hints) for error in errors]
        body["extensions"] = result.extensions
        self.response.status_code = status
        if _wants_graphql_response():
            self.response.mimetype = GRAPHQL_RESPONSE
        return body


bp.add_url_rule(
    "",
    view_func=Endpoint.as_view("execute"),
    methods=["POST"],
    provide_automatic_options=False,  # Allow: POST, and nothing else
)


def _unexpected(error: GraphQLError) -> bool:
    """Whether the server failed (masked), rather than refused what the client sent."""
    original = error.original_error
    if original is None or isinstance(original, DomainError | DataError | HTTPException):
        return False
    # A variable that would not coerce is the client's, and its message says which.
    return not (error.path is None and error.message.startswith("Variable '$"))


def _formatted(error: GraphQLError, hints: bool = True) -> dict[str, Any]:
    """A GraphQL error with REST's code in ``extensions.code``; the unexpected are masked, and
    without ``hints`` no "Did you mean …?" names what the schema holds."""
    original = error.original_error
    message = error.message if hints else SUGGESTION.sub("", error.message)
    extensions = {"code": "parameter_invalid", **(error.extensions or {})}
    if isinstance(error, GraphQLSyntaxError):
        extensions = syntax_error_extensions(error)
    elif isinstance(original, DomainError):
        message, extensions["code"] = original.message, original.code
        if original.param:
            extensions["param"] = original.param
    elif isinstance(original, DataError):  # such as NUL in an id, which PostgreSQL refuses
        message = "The request holds a value that cannot be used here."
    elif _unexpected(error):
        message, extensions = UNEXPECTED, {"code": "api_error"}
    formatted: dict[str, Any] = {"message": message}
    if error.locations:
        formatted["locations"] = [
            {"line": location.line, "column": location.column} for location in error.locations
        ]
    if error.path:
        formatted["path"] = error.path
    formatted["extensions"] = extensions
    return formatted


# --- the schema document and the IDE -----------------------------------------------------------

documents = Blueprint("graphql", __name__, url_prefix=GRAPHQL_PATH)


@documents.get("/schema.graphql")
def schema_document():
    """The schema, in the GraphQL schema language (public, like /v2/openapi.json)."""
    return current_app.response_class(sdl(), mimetype="text/plain")


ide = Blueprint(
    "graphiql",
    __name__,
    url_prefix=GRAPHQL_IDE,
    static_folder=str(IDE_FOLDER),
    static_url_path="/assets",  # (its page is the app's template graphiql/index.html: not an asset)
)


@ide.get("")
def graphiql():
    """GraphiQL, served from this box (staging only); the page says where the key goes."""
    key_prefix = prefix_for(current_app.config["DISCOUNTFLOW_ENV"], read_only=False)
    page = render_template("graphiql/index.html", endpoint=GRAPHQL_PATH, key_prefix=key_prefix)
    response = current_app.make_response(page)
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    return response


@click.command("graphql-schema")
@with_appcontext
def write_schema_command() -> None:
    """Write the GraphQL schema to discountflow/schema.graphql (commit it with the code)."""
    SDL_FILE.write_text(sdl())
    click.echo(f"Wrote {SDL_FILE}.")


def init_app(app: Flask) -> None:
    """Serve the GraphQL endpoint, its schema and (in staging) GraphiQL."""
    app.register_blueprint(bp)
    app.register_blueprint(documents)
    if app.config["DISCOUNTFLOW_ENV"] == "staging":
        app.register_blueprint(ide)
    app.cli.add_command(write_schema_command)
