"""What a GraphQL request may ask for, checked before anything runs.

* at most ``MAX_TOKENS`` lexical tokens (the parser stops counting there, before any work
  grows with the document) and one operation;
* at most ``MAX_DEFINITIONS`` definitions (the operation and its fragments),
  ``MAX_SPREADS`` fragment spreads, ``MAX_SELECTIONS`` selections (fields, spreads and
  inline fragments), ``MAX_DIRECTIVES`` directives and ``MAX_VALUES`` values (every literal —
  each item of a list and each field of an input object counted — every variable defined and
  every use of one), counted in one walk of the parsed document: the specification's
  validation compares fields and fragments pairwise, so its work grows with their square, and
  checks every value against its type (some 30 µs a value here), so a large input goes in the
  variables (JSON, checked by the API's own models);
* at most ``MAX_DEPTH`` levels of fields and ``MAX_ALIASES`` aliases;
* ``first`` between 1 and ``MAX_FIRST`` on every list (the schema makes it required);
* a cost of at most ``MAX_COST``: the nodes the query may return, counted as GitHub counts
  them — every list adds its ``first``, multiplied by the ``first`` of every list around it —
  and, for a field that adds up a whole period in the database (``AGGREGATES``: Insights),
  the rows it reads counted as nodes too, so a document holds at most one of it.

Introspection (``__schema``, ``__type``) is bounded by graphql-core's
``MaxIntrospectionDepthRule`` instead of depth and cost, so GraphiQL's own introspection query
works; it is off in production anyway. Fragments are summarized once each, so a document of
fragments that spread each other many times costs linear time to check, not exponential.

``QueryLimits`` applies them as a Strawberry extension: it tells the parser its limits, and
counts the rest before the specification's validation runs, with the request's variables
(``first: $n``): a document over a limit is refused without being validated, and one refusal
lists every limit it breaks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    build_schema,
    get_named_type,
    is_composite_type,
)
from strawberry import Schema
from strawberry.extensions import SchemaExtension

MAX_TOKENS = 2_000
MAX_DEPTH = 10
MAX_ALIASES = 20
MAX_FIRST = 100
MAX_COST = 5_000
MAX_QUERY_LENGTH = 64 * 1024
MAX_DEFINITIONS = 20
MAX_SPREADS = 50
MAX_SELECTIONS = 100
MAX_DIRECTIVES = 20
MAX_VALUES = 250
TOO_COMPLEX = "query_too_complex"
# Fields whose work is not the nodes they return: what each counts besides its lists. Insights
# adds up a whole period (hundreds of thousands of rows in a large organization): 3,000, so
# that one document cannot ask for it twice under two aliases.
AGGREGATES = {("Query", "insights"): 3_000}


# What the parser is told (Strawberry's ``parse_options``): it stops counting there, before any
# work grows with the document.
PARSE_OPTIONS = {
    "max_lexical_tokens": MAX_TOKENS,
    "max_comments": MAX_TOKENS,
    "max_source_length": MAX_QUERY_LENGTH,
}


def syntax_error_extensions(error: GraphQLError) -> dict[str, Any]:
    """The code of a document the parser refused: ``query_too_complex`` when it stopped at a
    limit (naming it), else ``parameter_invalid``."""
    if "Parsing aborted" in error.message:
        return {"code": TOO_COMPLEX, "limit": MAX_TOKENS}
    return {"code": "parameter_invalid"}


@dataclass(frozen=True)
class Size:
    """How much there is of a document, as written (fragments counted once, not expanded)."""

    definitions: int = 0
    spreads: int = 0
    selections: int = 0
    directives: int = 0
    values: int = 0

    @classmethod
    def of(cls, document: DocumentNode) -> Size:
        """Count in one walk, without recursion (a document may nest deeply)."""
        spreads = selections = directives = 0
        values: list[Any] = []  # what holds values: arguments, defaults, lists, input objects
        # (A type definition has no selections: the specification's rules refuse it.)
        pending = []
        for definition in document.definitions:
            for variable in getattr(definition, "variable_definitions", None) or ():
                values.append(variable.default_value)
                directives += len(variable.directives or ())
            values.extend(getattr(definition, "variable_definitions", None) or ())
            found = getattr(definition, "directives", None) or ()
            directives += len(found)
            values.extend(argument.value for each in found for argument in each.arguments)
            pending.append(getattr(definition, "selection_set", None))
        while pending:
            selection_set = pending.pop()
            for selection in selection_set.selections if selection_set else ():
                selections += 1
                found = selection.directives or ()
                directives += len(found)
                values.extend(argument.value for each in found for argument in each.arguments)
                if isinstance(selection, FragmentSpreadNode):
                    spreads += 1
                    continue
                values.extend(
                    argument.value for argument in getattr(selection, "arguments", None) or ()
                )
                pending.append(selection.selection_set)
        counted = 0
        while values:
            value = values.pop()
            if value is None:
                continue
            counted += 1
            if isinstance(value, ListValueNode):
                values.extend(value.values)
            elif isinstance(value, ObjectValueNode):
                values.extend(field.value for field in value.fields)
        return cls(len(document.definitions), spreads, selections, directives, counted)

    def refusals(self) -> list[GraphQLError]:
        """A refusal for each limit the document is over."""
        counted = (
            (self.definitions, MAX_DEFINITIONS, "definitions", "definitions"),
            (self.spreads, MAX_SPREADS, "spreads", "fragment spreads"),
            (self.selections, MAX_SELECTIONS, "selections", "selections"),
            (self.directives, MAX_DIRECTIVES, "directives", "directives"),
            (
                self.values,
                MAX_VALUES,
                "values",
                "values written in it (send large inputs as variables)",
            ),
        )
        return [
            GraphQLError(
                f"The query has {count:,} {words}; the limit is {limit:,}.",
                extensions={"code": TOO_COMPLEX, name: count, "limit": limit},
            )
            for count, limit, name, words in counted
            if count > limit
        ]


@dataclass(frozen=True)
class Summary:
    """What a selection set asks for: its depth, its aliases, and the nodes it may return."""

    depth: int = 0
    aliases: int = 0
    cost: int = 0

    def beside(self, other: Summary) -> Summary:
        return Summary(
            max(self.depth, other.depth), self.aliases + other.aliases, self.cost + other.cost
        )


class Analysis:
    """The depth, aliases and cost of a document's operation, and the bad ``first`` values."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode, variables: dict) -> None:
        self.schema = schema
        self.variables = variables if isinstance(variables, dict) else {}
        self.fragments = {
            definition.name.value: definition
            for definition in document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }
        self.summaries: dict[str, Summary] = {}
        self.errors: list[GraphQLError] = []
        self.defaults: dict[str, Any] = {}
        self.total = Summary()
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode):
                self.total = self.total.beside(self._operation(definition))

    @property
    def cost(self) -> int:
        """The nodes the operation may return; at least one."""
        return max(1, self.total.cost)

    def _operation(self, operation: OperationDefinitionNode) -> Summary:
        for definition in operation.variable_definitions or ():
            if isinstance(definition.default_value, IntValueNode):
                self.defaults[definition.variable.name.value] = int(definition.default_value.value)
        root = self.schema.get_root_type(operation.operation)
        if root is None:
            return Summary()
        return self._selections(operation.selection_set, root, frozenset())

    def _selections(self, selections: SelectionSetNode | None, parent, path) -> Summary:
        total = Summary()
        for selection in selections.selections if selections else ():
            if isinstance(selection, FieldNode):
                total = total.beside(self._field(selection, parent, path))
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                total = total.beside(self._selections(selection.selection_set, inner, path))
            elif isinstance(selection, FragmentSpreadNode):
                total = total.beside(self._fragment(selection.name.value, path))
        return total

    def _fragment(self, name: str, path: frozenset[str]) -> Summary:
        if name in path or name not in self.fragments:  # a cycle, or unknown: spec rules say so
            return Summary()
        if name not in self.summaries:
            fragment = self.fragments[name]
            condition = self.schema.get_type(fragment.type_condition.name.value)
            self.summaries[name] = self._selections(
                fragment.selection_set, condition, path | {name}
            )
        return self.summaries[name]

    def _field(self, node: FieldNode, parent, path) -> Summary:
        alias = 1 if node.alias else 0
        name = node.name.value
        definition = getattr(parent, "fields", {}).get(name) if parent is not None else None
        if name.startswith("__") or definition is None:
            # Introspection (bounded by its own rule), or a field the spec rules refuse.
            inner = self._selections(node.selection_set, None, path)
            return Summary(0, alias + inner.aliases, 0)
        named = get_named_type(definition.type)
        inner = self._selections(
            node.selection_set, named if is_composite_type(named) else None, path
        )
        weight = AGGREGATES.get((getattr(parent, "name", ""), name), 0)
        if "first" not in definition.args:
            return Summary(1 + inner.depth, alias + inner.aliases, weight + inner.cost)
        first = self._first(node)
        return Summary(1 + inner.depth, alias + inner.aliases, weight + first + first * inner.cost)

    def _first(self, node: FieldNode) -> int:
        """The ``first`` a list asks for (for the cost: the most it may be, when unknown)."""
        argument = next((arg for arg in node.arguments or () if arg.name.value == "first"), None)
        if argument is None:
            return MAX_FIRST  # required: the spec rules refuse the document
        value: Any = None
        if isinstance(argument.value, IntValueNode):
            value = int(argument.value.value)
        elif isinstance(argument.value, VariableNode):
            name = argument.value.name.value
            value = self.variables.get(name, self.defaults.get(name))
        if not isinstance(value, int) or isinstance(value, bool):
            return MAX_FIRST  # not a number: variable coercion refuses it
        if not 1 <= value <= MAX_FIRST:
            self.errors.append(
                GraphQLError(
                    f"first must be between 1 and {MAX_FIRST}, not {value}.",
                    argument,
                    extensions={"code": "parameter_invalid", "param": "first"},
                )
            )
        return min(max(value, 1), MAX_FIRST)

    def refusals(self) -> list[GraphQLError]:
        """Every limit the document breaks."""
        refusals = list(self.errors)
        if self.total.depth > MAX_DEPTH:
            refusals.append(
                GraphQLError(
                    f"The query is {self.total.depth} levels deep; the limit is {MAX_DEPTH}.",
                    extensions={"code": TOO_COMPLEX, "depth": self.total.depth},
                )
            )
        if self.total.aliases > MAX_ALIASES:
            refusals.append(
                GraphQLError(
                    f"The query has {self.total.aliases} aliases; the limit is {MAX_ALIASES}.",
                    extensions={"code": TOO_COMPLEX, "aliases": self.total.aliases},
                )
            )
        if self.cost > MAX_COST:
            refusals.append(
                GraphQLError(
                    f"The query may return {self.cost:,} nodes; the limit is {MAX_COST:,} per "
                    "request. Ask for fewer with first, or split the query.",
                    extensions={"code": TOO_COMPLEX, "cost": self.cost, "limit": MAX_COST},
                )
            )
        return refusals


@cache
def published(schema: Schema) -> GraphQLSchema:
    """The schema as published (its SDL, ``schema.graphql``), which the limits count on:
    Strawberry keeps the graphql-core schema it executes with to itself."""
    return build_schema(schema.as_str())


class QueryLimits(SchemaExtension):
    """The limits of a request, applied within Strawberry's execution (one per request)."""

    analysis: Analysis | None = None

    def on_operation(self) -> Iterator[None]:
        self.execution_context.parse_options.update(PARSE_OPTIONS)
        yield

    def on_validate(self) -> Iterator[None]:
        # Before the hook yields, and so before validation: Strawberry does not validate a
        # document that has errors by then, and answers them.
        execution = self.execution_context
        document = execution.graphql_document
        self.analysis = Analysis(published(execution.schema), document, execution.variables or {})
        refusals = [*Size.of(document).refusals(), *self.analysis.refusals()]
        if refusals:
            execution.pre_execution_errors = [*(execution.pre_execution_errors or ()), *refusals]
        yield

    def get_results(self) -> dict[str, Any]:
        """``extensions.cost`` of every answer: 1 for a document not counted (not parsed)."""
        return {"cost": {"requested": self.analysis.cost if self.analysis else 1}}
