"""The GraphQL API at ``/v2/graphql``: the schema assembled from each feature's ``graphql.py``,
served by Strawberry's Flask view, subclassed to keep REST's contract.

A request passes the ``/v2`` pipeline first, exactly as a REST request does: its key is
authenticated before anything is parsed (the documented 401), and it counts against the same
per-key budget (``api.py``). Then this view:

* takes ``POST`` with a JSON object of at most 64 KiB (``GET``: 405; another content type:
  415; a batch, which is a JSON array: 400; larger: 413) — refusals in REST's error shape;
* parses the document itself (at most 2,000 tokens, one operation), refuses a mutation from a
  read-only key with REST's 403 ``read_only_key`` before any resolver runs, and honours
  ``Idempotency-Key`` on a mutation as REST does on a POST;
* lets Strawberry validate (the spec's rules and ours: ``graphql_limits.py``) and execute the
  parsed document, then answers GraphQL's ``{"data", "errors", "extensions"}`` with REST's
  error codes in ``errors[].extensions.code``, the query's cost in ``extensions.cost``, and
  the status codes of the GraphQL-over-HTTP specification.

``schema.graphql`` beside this module is the schema as committed (a test fails when the code
drifts from it); it is served at ``/v2/graphql/schema.graphql``, and GraphiQL, from local
files, at ``/v2/graphql/ide`` in staging.
"""

from __future__ import annotations

import json
import logging
from functools import cache, lru_cache
from operator import attrgetter
from pathlib import Path
from typing import Any

import click
import orjson
import strawberry
from flask import Blueprint, Flask, current_app, g, request, send_from_directory
from flask.cli import with_appcontext
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLList,
    GraphQLObjectType,
    GraphQLSchema,
    MaxIntrospectionDepthRule,
    NoSchemaIntrospectionCustomRule,
    OperationDefinitionNode,
    OperationType,
    Undefined,
    execute,
    get_nullable_type,
    is_leaf_type,
    is_non_null_type,
    specified_rules,
)
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path as ResponsePath
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from strawberry.execution.is_awaitable import optimized_is_awaitable
from strawberry.extensions import SchemaExtension
from strawberry.flask.views import GraphQLView
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext, validate_document
from strawberry.tools import merge_types
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

from . import idempotency
from .api import GRAPHQL_IDE, GRAPHQL_PATH, current_actor, per_key_quota
from .approvals import graphql as approvals
from .audit import graphql as audit
from .auth import graphql as auth
from .errors import DomainError, InvalidParameter
from .graphql_base import SCALARS, SLICED, Context
from .graphql_limits import Analysis, parse_query
from .organizations import graphql as organizations
from .pagination import MAX_LIMIT
from .products import graphql as products
from .webhooks import graphql as webhooks

log = logging.getLogger(__name__)

SDL_FILE = Path(__file__).parent / "schema.graphql"
IDE_FOLDER = Path(__file__).parent / "graphiql"
MAX_BODY_BYTES = 64 * 1024
REMEMBERED_QUERY_LENGTH = 8 * 1024  # longer documents are parsed and validated every time
GRAPHQL_RESPONSE = "application/graphql-response+json"
UNEXPECTED = "Internal server error"
_SPECIFIED_RULES = tuple(specified_rules)  # Strawberry's default validation rules


# --- the schema --------------------------------------------------------------------------------


class _Schema(strawberry.Schema):
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


class _RequestLimits(SchemaExtension):
    """Hand Strawberry the document the view parsed and the errors validating it found: the
    specification's rules (remembered per document, see ``_spec_errors``) and the limits
    (counted each time: ``first`` may come from the variables)."""

    def on_parse(self):
        self.execution_context.graphql_document = self.execution_context.context.document
        yield

    def on_validate(self):
        execution = self.execution_context
        context: Context = execution.context
        environment = current_app.config["DISCOUNTFLOW_ENV"]
        rules = (*execution.validation_rules, *_extra_rules(environment))
        if context.query is not None:
            errors = list(_spec_errors(environment, context.query, rules))
        else:  # a document too large to remember
            errors = validate_document(execution.schema._schema, context.document, rules)
        if context.query is not None and not execution.variables:
            analysis = _analysis(environment, context.query)
        else:  # the limits may depend on the variables (first: $n)
            analysis = Analysis(execution.schema._schema, context.document, execution.variables)
        context.limits.append(analysis)
        # Strawberry validates only when nothing has: these are the document's errors.
        execution.pre_execution_errors = errors + analysis.refusals()
        yield
        if execution.pre_execution_errors:
            context.refused = True


@cache
def _query_rules(environment: str) -> tuple:
    """The rules ``_RequestLimits`` validates with: Strawberry's defaults and ours."""
    return (*_SPECIFIED_RULES, *_extra_rules(environment))


def _extra_rules(environment: str) -> tuple:
    if environment == "production":
        return (MaxIntrospectionDepthRule, NoSchemaIntrospectionCustomRule)
    return (MaxIntrospectionDepthRule,)


@lru_cache(maxsize=256)
def _parsed(query: str) -> DocumentNode:
    """A document, parsed once per process (integrations send the same few again and again)."""
    return parse_query(query)


@lru_cache(maxsize=256)
def _spec_errors(environment: str, query: str, rules: tuple) -> tuple[GraphQLError, ...]:
    """The specification's validation of a remembered document: it depends on nothing else."""
    return tuple(validate_document(schema(environment)._schema, _parsed(query), rules))


@lru_cache(maxsize=256)
def _analysis(environment: str, query: str) -> Analysis:
    """The limits of a remembered document sent without variables: they depend on nothing else."""
    return Analysis(schema(environment)._schema, _parsed(query), {})


def parse_document(query: str) -> tuple[DocumentNode, str | None]:
    """Parse a request's document; return it, and the text it is remembered by (if small)."""
    if len(query) > REMEMBERED_QUERY_LENGTH:
        return parse_query(query), None
    return _parsed(query), query


class _ExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's execution, with a lean path for the plainest fields.

    Each selection is planned once per request (``_fields_plan``). Done here, without building
    graphql-core's resolve info for each field: a field that only reads a scalar or enum
    attribute of its object (most fields of a page of approvals); a list that slices an
    attribute and selects only such leaves (``lineItems(first: 10)``); a field holding a plain
    object or a list of them (``edges``, ``node``, ``pageInfo``), whose objects' fields are
    executed directly; a field whose resolver takes nothing (``me``). Anything else — a null
    where graphql-core would complain, a missing attribute, a value that does not serialize,
    every resolver with arguments or ``info`` — takes graphql-core's own path, so errors and
    nulls are exactly what it makes of them (``tests/test_graphql.py`` holds the two paths to
    the same answers). Fields run in the order of their selection, the lean ones first.
    """

    def execute_fields(self, parent_type, source, path, grouped_field_set, position_context):
        middleware = self.middleware_manager
        if middleware is not None and middleware.middlewares:
            return super().execute_fields(
                parent_type, source, path, grouped_field_set, position_context
            )
        results: dict[str, Any] = {}
        others: dict[str, Any] = {}
        for response_name, kind, how, field_details_list in self._fields_plan(
            parent_type, grouped_field_set
        ):
            if kind is _LEAF:
                attribute, serialize, nullable, as_is = how
                value = getattr(source, attribute, Undefined)
                if type(value) is as_is:
                    results[response_name] = value
                    continue
                if value is None and nullable:
                    results[response_name] = None
                    continue
                if value is not None and value is not Undefined:
                    try:
                        serialized = serialize(value)
                    except Exception:  # noqa: BLE001 - graphql-core says what was wrong, below
                        serialized = None
                    if serialized is not None and serialized is not Undefined:
                        results[response_name] = serialized
                        continue
            elif kind is _SLICED:
                items = self._plain_list(parent_type, source, field_details_list, how)
                if items is not None:
                    results[response_name] = items
                    continue
            elif kind is _OBJECT:
                value = getattr(source, how[0], Undefined)
                completed = self._complete_plain(
                    parent_type, value, path, response_name, field_details_list, how
                )
                if completed is not Undefined:
                    results[response_name] = completed
                    continue
            elif kind is _RESOLVED:
                results[response_name] = self._resolve_plain(
                    parent_type, source, path, response_name, field_details_list, how
                )
                continue
            results[response_name] = None  # keeps the order of the selection
            others[response_name] = field_details_list
        if not others:
            return results
        done = super().execute_fields(parent_type, source, path, others, position_context)
        if self.is_awaitable(done):

            async def merged() -> dict[str, Any]:
                results.update(await done)
                return results

            return merged()
        results.update(done)
        return results

    def _fields_plan(self, parent_type, grouped_field_set) -> list[tuple]:
        """How each field of a selection is executed: (response name, kind, what the kind
        needs, its field details). A selection recurs for every object of a list (graphql-core
        collects it once), so it is planned once per request."""
        plans = self.__dict__.setdefault("_fields_plans", {})
        planned = plans.get(id(grouped_field_set))
        if planned is not None and planned[0] is grouped_field_set:
            return planned[1]
        plain = _plain_leaves(self.schema)
        sliced = _sliced_lists(self.schema)
        objects = _plain_objects(self.schema)
        resolved = _plain_resolvers(self.schema)
        type_name = parent_type.name
        plan = []
        for response_name, field_details_list in grouped_field_set.items():
            key = (type_name, field_details_list[0].node.name.value)
            if key in plain:
                plan.append((response_name, _LEAF, plain[key], field_details_list))
            elif key in sliced:
                plan.append((response_name, _SLICED, sliced[key], field_details_list))
            elif key in objects:
                plan.append((response_name, _OBJECT, objects[key], field_details_list))
            elif key in resolved:
                plan.append((response_name, _RESOLVED, resolved[key], field_details_list))
            else:
                plan.append((response_name, None, None, field_details_list))
        # (the selection is kept alive with its plan, so that its id is not reused)
        plans[id(grouped_field_set)] = (grouped_field_set, plan)
        return plan

    def _complete_plain(self, parent_type, value, path, response_name, field_details_list, how):
        """The value of a field of a plain object type, or a list of such objects, of a type
        that needs no check (``edges``, ``node``, ``pageInfo``, ``me``): its objects' fields
        are executed here directly, as graphql-core's completion would, and an error is handled
        as graphql-core handles it for the field. ``Undefined`` (let graphql-core complete it)
        for a null, a missing attribute, a null item or a deferred fragment."""
        _attribute, object_type, is_list, return_type = how
        if value is None or value is Undefined:
            return Undefined
        if is_list and (not isinstance(value, (list, tuple)) or None in value):
            return Undefined
        grouped, defer_usages, _ = self.collect_subfields(object_type, field_details_list)
        if defer_usages:
            return Undefined
        field_path = ResponsePath(path, response_name, parent_type.name)
        try:
            if not is_list:
                return self.execute_fields(object_type, value, field_path, grouped, None)
            return [
                self.execute_fields(object_type, item, field_path.add_key(index), grouped, None)
                for index, item in enumerate(value)
            ]
        except Exception as raw_error:  # noqa: BLE001 - handled as graphql-core handles it
            self.handle_field_error(raw_error, return_type, field_details_list, field_path)
            return None

    def _resolve_plain(self, parent_type, source, path, response_name, field_details_list, how):
        """A field whose resolver takes nothing (``me``, ``organization``), called directly
        rather than through Strawberry's per-call wrapping (it has no argument, permission or
        extension to apply), then completed as graphql-core's ``execute_field`` would."""
        resolver, with_self, object_how = how
        return_type = object_how[3]
        try:
            value = resolver(source) if with_self else resolver()
            completed = self._complete_plain(
                parent_type, value, path, response_name, field_details_list, object_how
            )
            if completed is not Undefined:
                return completed
            field_path = ResponsePath(path, response_name, parent_type.name)
            field_def = parent_type.fields[field_details_list[0].node.name.value]
            info = self.build_resolve_info(
                field_def, [each.node for each in field_details_list], parent_type, field_path
            )
            return self.complete_value(
                return_type, field_details_list, info, field_path, value, None
            )
        except Exception as raw_error:  # noqa: BLE001 - handled as graphql-core handles it
            field_path = ResponsePath(path, response_name, parent_type.name)
            self.handle_field_error(raw_error, return_type, field_details_list, field_path)
            return None

    def _plain_list(self, parent_type, source, field_details_list, how) -> list | None:
        """A list field that slices an attribute of its object (``lineItems(first: 10)``) and
        selects only plain leaves of its items, completed here in one pass; ``None`` (take
        graphql-core's path) for anything else: an argument outside 1–100, a fragment deferred,
        a field that is not a plain leaf, a value that does not serialize."""
        # The same selection recurs for every object of a page: plan it once per request.
        plans = self.__dict__.setdefault("_plain_list_plans", {})
        key = (parent_type.name, id(field_details_list))
        if key not in plans:
            plans[key] = (
                field_details_list,
                self._plan_plain_list(parent_type, field_details_list, how),
            )
        plan = plans[key][1]
        if plan is None:
            return None
        attribute, first, read, readers = plan
        completed = []
        for item in getattr(source, attribute)[:first]:
            try:
                row = read(item)
            except AttributeError:
                return None
            values = {}
            for (response_name, serialize, nullable, as_is), value in zip(
                readers, row, strict=True
            ):
                if type(value) is as_is:
                    values[response_name] = value
                    continue
                if value is None:
                    if not nullable:
                        return None
                    values[response_name] = None
                    continue
                try:
                    serialized = serialize(value)
                except Exception:  # noqa: BLE001 - graphql-core says what was wrong
                    return None
                if serialized is None or serialized is Undefined:
                    return None
                values[response_name] = serialized
            completed.append(values)
        return completed

    def _plan_plain_list(self, parent_type, field_details_list, how) -> tuple | None:
        name = field_details_list[0].node.name.value
        attribute, item_type = how
        if item_type.is_type_of is not None:
            return None
        arguments = get_argument_values(
            parent_type.fields[name], field_details_list[0].node, self.variable_values
        )
        first = arguments.get("first")
        if type(first) is not int or not 1 <= first <= MAX_LIMIT:
            return None
        grouped, defer_usages, _ = self.collect_subfields(item_type, field_details_list)
        if defer_usages:
            return None
        plain = _plain_leaves(self.schema)
        readers, attributes = [], []
        for response_name, subfields in grouped.items():
            leaf = plain.get((item_type.name, subfields[0].node.name.value))
            if leaf is None:
                return None
            item_attribute, serialize, nullable, as_is = leaf
            attributes.append(item_attribute)
            readers.append((response_name, serialize, nullable, as_is))
        if not attributes:
            return None
        getter = attrgetter(*attributes)  # every value of an item in one call
        read = getter if len(attributes) > 1 else lambda item: (getter(item),)
        return attribute, first, read, readers


def _schema_fields(graphql_schema: GraphQLSchema):
    """(type name, field name, field, Strawberry's definition or None) for every field of the
    schema's object types, introspection's own left out: what the tables below look through."""
    for type_name, graphql_type in graphql_schema.type_map.items():
        if type_name.startswith("__") or not isinstance(graphql_type, GraphQLObjectType):
            continue
        for field_name, field in graphql_type.fields.items():
            yield (
                type_name,
                field_name,
                field,
                (field.extensions or {}).get("strawberry-definition"),
            )


# The kinds of field of a plan (``_ExecutionContext._fields_plan``); None: graphql-core's path.
_LEAF, _SLICED, _OBJECT, _RESOLVED = "leaf", "sliced", "object", "resolved"


@cache
def _plain_objects(graphql_schema: GraphQLSchema) -> dict[tuple[str, str], tuple]:
    """(type, field) → (the attribute it reads, its object type, whether a list of them, its
    type), for fields without resolver or arguments of a non-null object type, or a non-null
    list of non-null objects, whose type has no ``is_type_of`` check."""
    found = {}
    for type_name, field_name, field, definition in _schema_fields(graphql_schema):
        if definition is None or not definition.is_basic_field or field.args:
            continue
        entry = _object_entry(definition.python_name, field.type)
        if entry is not None:
            found[(type_name, field_name)] = entry
    return found


def _object_entry(attribute: str, field_type) -> tuple | None:
    """(attribute, object type, whether a list, the field's type) for a non-null object type,
    or a non-null list of non-null objects, whose type has no ``is_type_of`` check."""
    if not is_non_null_type(field_type):
        return None
    inner, is_list = field_type.of_type, False
    if isinstance(inner, GraphQLList):
        if not is_non_null_type(inner.of_type):
            return None
        inner, is_list = inner.of_type.of_type, True
    if isinstance(inner, GraphQLObjectType) and inner.is_type_of is None:
        return attribute, inner, is_list, field_type
    return None


@cache
def _plain_resolvers(graphql_schema: GraphQLSchema) -> dict[tuple[str, str], tuple]:
    """(type, field) → (its resolver, whether it takes the object, the plain-object entry of
    its type), for fields of a plain object type (as ``_plain_objects``) whose synchronous
    resolver takes no argument, no ``info``, no root or parent, and that carry no permission
    or extension: what Strawberry's wrapping would do for them is only the call."""
    found = {}
    for type_name, field_name, field, definition in _schema_fields(graphql_schema):
        resolver = getattr(definition, "base_resolver", None)
        if (
            resolver is None
            or field.args
            or resolver.arguments
            or resolver.is_async
            or resolver.info_parameter is not None
            or resolver.root_parameter is not None
            or resolver.parent_parameter is not None
            or definition.permission_classes
            or definition.extensions
        ):
            continue
        entry = _object_entry(definition.python_name, field.type)
        if entry is not None:
            found[(type_name, field_name)] = (
                resolver.wrapped_func,
                resolver.self_parameter is not None,
                entry,
            )
    return found


@cache
def _sliced_lists(graphql_schema: GraphQLSchema) -> dict[tuple[str, str], tuple[str, Any]]:
    """(type, field) → (the attribute it slices, its item type), for the list fields declared
    with ``graphql_base.sliced`` (a non-null list of non-null objects, argument ``first``)."""
    found = {}
    for type_name, field_name, field, definition in _schema_fields(graphql_schema):
        attribute = (getattr(definition, "metadata", None) or {}).get(SLICED)
        if attribute is None:
            continue
        item = get_nullable_type(get_nullable_type(field.type).of_type)
        if (
            is_non_null_type(field.type)
            and is_non_null_type(get_nullable_type(field.type).of_type)
            and isinstance(item, GraphQLObjectType)
            and set(field.args) == {"first"}
        ):
            found[(type_name, field_name)] = (attribute, item)
    return found


@cache
def _plain_leaves(
    graphql_schema: GraphQLSchema,
) -> dict[tuple[str, str], tuple[str, Any, bool, type | None]]:
    """(type, field) → (the attribute it reads, its type's serializer, whether it may be
    null, the Python type answered as it is), for plain leaves."""
    plain = {}
    for type_name, field_name, field, definition in _schema_fields(graphql_schema):
        leaf = get_nullable_type(field.type)
        if (
            definition is not None
            and definition.is_basic_field
            and not field.args
            and is_leaf_type(leaf)
        ):
            plain[(type_name, field_name)] = (
                definition.python_name,
                leaf.serialize,
                not is_non_null_type(field.type),
                _as_is(leaf),
            )
    return plain


# The scalars whose serialization of a value of this exact Python type is the value itself.
_AS_IS = {
    "String": ("text", str),
    "ID": ("id_1", str),
    "Boolean": (True, bool),
    "Long": (2**40, int),
}


def _as_is(leaf) -> type | None:
    """The Python type a leaf's values may have to be answered as they are (checked once on
    a sample: the serializer must give the very value back), or None."""
    sample, python_type = _AS_IS.get(leaf.name, (None, None))
    if python_type is None:
        return None
    try:
        return python_type if leaf.serialize(sample) is sample else None
    except Exception:  # noqa: BLE001 - then every value goes through the serializer
        return None


@cache
def schema(environment: str = "staging") -> strawberry.Schema:
    """The schema, built once per process from every feature's queries and mutations.

    In production a mistyped field gets no "did you mean" hint: with introspection off, the
    schema is not told piece by piece either.
    """
    query = merge_types(
        "Query",
        (
            auth.Query,
            organizations.Query,
            approvals.Query,
            products.Query,
            webhooks.Query,
            audit.Query,
        ),
    )
    mutation = merge_types(
        "Mutation",
        (approvals.Mutation, products.Mutation, webhooks.Mutation, organizations.Mutation),
    )
    config = StrawberryConfig(
        scalar_map=SCALARS, disable_field_suggestions=environment == "production"
    )
    return _Schema(
        query=query,
        mutation=mutation,
        extensions=[_RequestLimits],
        config=config,
        execution_context_class=_ExecutionContext,
    )


def sdl() -> str:
    """The schema in the GraphQL schema language, as committed in ``schema.graphql``."""
    return schema().as_str() + "\n"


# --- the endpoint ------------------------------------------------------------------------------


def _body() -> dict[str, Any]:
    """The request's JSON object, within the limits, or a refusal in REST's shape."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("Send the GraphQL request as JSON (application/json).")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise RequestEntityTooLarge()
    request.max_content_length = MAX_BODY_BYTES  # also bounds a body sent without a length
    try:
        body = json.loads(request.get_data(cache=True))
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
    """Strawberry's synchronous Flask view, keeping REST's contract (see the module's text)."""

    methods = ["POST"]  # noqa: RUF012 - Flask's own class attribute
    init_every_request = False  # one view for every request: it keeps no request's state

    def __init__(self, environment: str) -> None:
        super().__init__(schema=schema(environment), graphql_ide=None, allow_queries_via_get=False)

    def dispatch_request(self):
        body = _body()
        context = Context(actor=current_actor())
        try:
            context.document, context.query = parse_document(body["query"])
        except GraphQLError as error:
            return self._answer(None, [error], context, status=400)
        operations = [
            definition
            for definition in context.document.definitions
            if isinstance(definition, OperationDefinitionNode)
        ]
        if len(operations) != 1:
            problem = GraphQLError(
                "Send exactly one operation per request.",
                extensions={"code": "parameter_invalid", "param": "query"},
            )
            return self._answer(None, [problem], context, status=400)
        if operations[0].operation is OperationType.MUTATION:
            context.actor.require_write()  # a read-only key: 403, before any resolver runs
            replayed = idempotency.begin(context.actor.organization_id, context.actor.api_key_id)
            if replayed is not None:
                return replayed
        result = self._execute_query(body, context, operations[0])
        if result is None:
            result = self.schema.execute_sync(
                body["query"],
                variable_values=body.get("variables"),
                context_value=context,
                operation_name=body.get("operationName"),
            )
        for error in result.errors or ():
            if isinstance(error.original_error, (OperationalError, InterfaceError)):
                raise error.original_error  # the database is away: 503, as REST answers
        before_execution = [error for error in result.errors or () if error.path is None]
        if any(_unexpected(error) for error in before_execution):
            return self._answer(None, before_execution, context, status=500)
        refused = context.refused or (result.data is None and before_execution)
        status = (422 if _wants_graphql_response() else 400) if refused else 200
        return self._answer(None if refused else result.data, result.errors, context, status)

    def _execute_query(self, body, context: Context, operation) -> ExecutionResult | None:
        """A query whose document is remembered as valid, within the limits: executed by
        graphql-core straight away, as Strawberry would once its hooks had found nothing to
        refuse (``_RequestLimits``). ``None`` for everything else (mutations, documents too
        large to remember or refused), which Strawberry's own ``execute_sync`` runs."""
        if operation.operation is not OperationType.QUERY or context.query is None:
            return None
        environment = current_app.config["DISCOUNTFLOW_ENV"]
        if _spec_errors(environment, context.query, _query_rules(environment)):
            return None
        variables = body.get("variables")
        if variables:
            analysis = Analysis(self.schema._schema, context.document, variables)
        else:
            analysis = _analysis(environment, context.query)
        if analysis.refusals():
            return None
        context.limits.append(analysis)
        result = execute(
            self.schema._schema,
            context.document,
            context_value=context,
            variable_values=variables,
            operation_name=body.get("operationName"),
            executor_class=_ExecutionContext,
            is_awaitable=optimized_is_awaitable,
            is_async_iterable=_never,
            operation_extensions=None,
        )
        if result.errors:
            self.schema.process_errors(result.errors)
        return result

    def _answer(self, data, errors, context: Context, status: int):
        body: dict[str, Any] = {}
        if status == 200:
            body["data"] = data
        if errors:
            body["errors"] = [_formatted(error) for error in errors]
        body["extensions"] = {"cost": {"requested": context.cost}}
        media = GRAPHQL_RESPONSE if _wants_graphql_response() else "application/json"
        return current_app.response_class(_dumps(body), status=status, mimetype=media)


def _never(_value: Any) -> bool:
    return False


def _dumps(body: dict[str, Any]) -> bytes | str:
    """The answer as JSON: orjson's, ten times faster, or the standard library's for what
    orjson does not write (an integer beyond 64 bits in a JSON value)."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body, separators=(",", ":"))


def _unexpected(error: GraphQLError) -> bool:
    """Whether the server failed (masked), rather than refused what the client sent."""
    original = error.original_error
    if original is None or isinstance(original, (DomainError, DataError)):
        return False
    # A variable that would not coerce is the client's, and its message says which.
    return not (error.path is None and error.message.startswith("Variable '$"))


def _formatted(error: GraphQLError) -> dict[str, Any]:
    """A GraphQL error with REST's code in ``extensions.code``; the unexpected are masked."""
    original = error.original_error
    message = error.message
    extensions = {"code": "parameter_invalid", **(error.extensions or {})}
    if isinstance(original, DomainError):
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

bp = Blueprint("graphql", __name__, url_prefix=GRAPHQL_PATH)


@bp.get("/schema.graphql")
def schema_document():
    """The schema, in the GraphQL schema language (public, like /v2/openapi.json)."""
    return current_app.response_class(sdl(), mimetype="text/plain")


ide = Blueprint(
    "graphiql",
    __name__,
    url_prefix=GRAPHQL_IDE,
    static_folder=str(IDE_FOLDER),
    static_url_path="/assets",
)


@ide.get("")
def graphiql():
    """GraphiQL, served from this box (staging only); the key goes in its Headers tab."""
    response = send_from_directory(IDE_FOLDER, "index.html", max_age=0)
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
    app.add_url_rule(
        GRAPHQL_PATH,
        view_func=per_key_quota(
            Endpoint.as_view("graphql_endpoint", app.config["DISCOUNTFLOW_ENV"])
        ),
        methods=["POST"],
        provide_automatic_options=False,  # Allow: POST, and nothing else
    )
    app.register_blueprint(bp)
    if app.config["DISCOUNTFLOW_ENV"] == "staging":
        app.register_blueprint(ide)
    app.cli.add_command(write_schema_command)
