"""MLflow's search grammar, parsed by hand into a small typed AST.

MLflow parses filters with ``sqlparse`` (a general SQL lexer) and then picks the
pieces it understands out of the token tree. That makes its grammar an accident of
sqlparse's grouping rules. evtrack writes the grammar down instead and accepts the
same language, with MLflow's rules for which comparator and value type are valid
where, and MLflow's error messages (as :class:`~evtrack.errors.InvalidFilter`,
``INVALID_PARAMETER_VALUE``)::

    filter      := { "AND" | comparison }            -- MLflow tolerates stray ANDs
    comparison  := identifier comparator value
                 | identifier ["NOT"] "IN" "(" string { "," string } [","] ")"
                 | identifier "IS" ["NOT"] "NULL"
    comparator  := "=" | "!=" | "<" | "<=" | ">" | ">=" | "LIKE" | "ILIKE"
    identifier  := part { "." part }                 -- no spaces around the dots
    part        := word | `backticked` | "double quoted" | 'single quoted' (not first)
    value       := 'single quoted' | "double quoted" | number
    order_by    := identifier ["ASC" | "DESC"]

Quoted strings keep their inner text verbatim, as in MLflow: ``'it''s'`` is the
four characters ``it''s`` (write ``"it's"`` instead). Lists after ``IN`` are read as
Python string literals, exactly as MLflow does with ``ast.literal_eval``. The key of
an identifier is everything after the first dot, with one layer of quotes or
backticks removed, so ``tags.mlflow.runName`` is the tag ``mlflow.runName``.

Where sqlparse made MLflow reject a well-formed filter (a key that happens to be the
SQL keyword ``in`` or ``from``, blanks around an ``order_by`` clause) evtrack accepts
it; everything MLflow accepts, evtrack accepts with the same meaning. ``docs/search.md``
lists these differences.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from evtrack.errors import InvalidFilter

__all__ = [
    "Comparison",
    "EntityType",
    "OrderBy",
    "Value",
    "parse_experiments_filter",
    "parse_experiments_order_by",
    "parse_filter",
    "parse_order_by",
]

EntityType = Literal["metric", "parameter", "tag", "attribute", "dataset"]
Value = str | float | int | tuple[str, ...] | None


@dataclass(frozen=True)
class Comparison:
    """One ``<entity>.<key> <comparator> <value>`` clause of a filter.

    ``key`` is canonical: attribute aliases are resolved (``created`` is
    ``start_time``, ``run name`` is ``run_name``). ``comparator`` is upper case.
    ``value`` is a ``float`` for metrics, an ``int`` or ``float`` for numeric
    attributes, a ``tuple`` of strings for ``IN``/``NOT IN``, ``None`` for
    ``IS [NOT] NULL`` and a ``str`` otherwise.
    """

    entity_type: EntityType
    key: str
    comparator: str
    value: Value


@dataclass(frozen=True)
class OrderBy:
    """One ``order_by`` clause: sort by ``entity_type.key``, ascending or not."""

    entity_type: EntityType
    key: str
    ascending: bool = True


# --- vocabulary (MLflow's SearchUtils / SearchExperimentsUtils) -------------------

_ENTITY_ALIASES: dict[str, EntityType] = {
    "metric": "metric",
    "metrics": "metric",
    "parameter": "parameter",
    "parameters": "parameter",
    "param": "parameter",
    "params": "parameter",
    "tag": "tag",
    "tags": "tag",
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "run": "attribute",
    "dataset": "dataset",
    "datasets": "dataset",
}
_ENTITY_NAMES = ["metric", "parameter", "tag", "attribute", "dataset"]

RUN_STRING_ATTRIBUTES = frozenset({"run_id", "run_name", "user_id", "status", "artifact_uri"})
RUN_NUMERIC_ATTRIBUTES = frozenset({"start_time", "end_time"})
_RUN_ATTRIBUTE_ALIASES = {
    "created": "start_time",
    "Created": "start_time",
    "run name": "run_name",
    "Run name": "run_name",
    "Run Name": "run_name",
}
_RUN_SEARCHABLE = RUN_STRING_ATTRIBUTES | RUN_NUMERIC_ATTRIBUTES | set(_RUN_ATTRIBUTE_ALIASES)
# MLflow does not accept the "run name" spellings in order_by, only "created".
_RUN_ORDERABLE = RUN_STRING_ATTRIBUTES | RUN_NUMERIC_ATTRIBUTES | {"created", "Created"}
DATASET_KEYS = frozenset({"name", "digest", "context"})

EXPERIMENT_ATTRIBUTES = frozenset({"name", "experiment_id", "creation_time", "last_update_time"})
_EXPERIMENT_NUMERIC = frozenset({"creation_time", "last_update_time"})
_EXPERIMENT_ENTITIES = ("attribute", "tag", "tags")

_NUMERIC_CMP = frozenset({"=", "!=", "<", "<=", ">", ">="})
_STRING_CMP = frozenset({"=", "!=", "LIKE", "ILIKE"})
_KEY_VALUE_CMP = _STRING_CMP | {"IS NULL", "IS NOT NULL"}  # params and tags
_LIST_CMP = frozenset({"IN", "NOT IN"})
_NULL_CMP = frozenset({"IS NULL", "IS NOT NULL"})


def _fmt(options: Iterable[str]) -> str:
    return "{" + ", ".join(repr(o) for o in sorted(options)) + "}"


# --- tokenizer ----------------------------------------------------------------------

_STRING = r"'(?:''|\\'|[^'])*'"  # sqlparse's rules, so the same text is one token
_DQUOTED = r'"(?:""|\\"|[^"])*"'
_BACKTICK = r"`(?:``|[^`])*`"
# MLflow (sqlparse) has no "+" in exponents; evtrack also reads Python's repr "1e+16".
_NUMBER = r"-?(?:\d+(?:\.\d+)?[eE][-+]?\d+|\d+\.\d*|\.\d+|\d+)(?!\w)"
_TOKEN_RE = re.compile(
    rf"(?P<ws>\s+)|(?P<string>{_STRING})|(?P<dquoted>{_DQUOTED})|(?P<backtick>{_BACKTICK})"
    rf"|(?P<number>{_NUMBER})|(?P<word>\w+)|(?P<op>[<>=!~]+)|(?P<punct>[,()])"
)
_AFTER_DOT_RE = re.compile(
    rf"(?P<word>\w+)|(?P<string>{_STRING})|(?P<dquoted>{_DQUOTED})|(?P<backtick>{_BACKTICK})"
)
_NAME_KINDS = ("word", "backtick", "dquoted")


@dataclass(frozen=True)
class _Token:
    kind: str  # ws-free: string dquoted backtick number word op punct dot
    text: str
    start: int
    end: int

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.upper() in words


def _tokenize(text: str) -> list[_Token]:
    """Split ``text`` into tokens; a ``.`` is only legal glued between two name parts."""
    from evtrack.tracking.validation import check_text

    check_text(text, "filter")  # a lone surrogate would only fail later, inside DuckDB
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        prev = tokens[-1] if tokens else None
        glued = prev is not None and prev.end == pos and prev.kind in (*_NAME_KINDS, "string")
        if text[pos] == "." and glued and prev is not None and prev.kind != "number":
            tokens.append(_Token("dot", ".", pos, pos + 1))
            match = _AFTER_DOT_RE.match(text, pos + 1)
            if match is None:
                raise _syntax(text, pos + 1, "a key after '.'")
            pos = match.end()
            assert match.lastgroup is not None
            tokens.append(_Token(match.lastgroup, match.group(), match.start(), pos))
            continue
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise _syntax(text, pos, "a key, a comparison or a value")
        assert match.lastgroup is not None
        if match.lastgroup != "ws":
            tokens.append(_Token(match.lastgroup, match.group(), pos, match.end()))
        pos = match.end()
    return tokens


def _syntax(text: str, pos: int, expected: str) -> InvalidFilter:
    found = text[pos : pos + 20] or "the end"
    return InvalidFilter(
        f"Invalid clause(s) in filter string: could not parse {found!r} at position {pos} "
        f"of {text!r}; expected {expected}. Quote keys with special characters in "
        "backticks (metrics.`my-metric`) and string values in quotes ('value')."
    )


# --- identifiers --------------------------------------------------------------------


def _strip_quotes(text: str) -> str:
    """MLflow's key unquoting: one layer of '...' or "...", then one of `...`."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    if len(text) >= 2 and text[0] == text[-1] == "`":
        text = text[1:-1]
    return text


@dataclass(frozen=True)
class _Identifier:
    prefix: str | None  # raw text before the first dot, or None for a bare name
    key: str  # unquoted text after the first dot (or the whole bare name)
    text: str


class _Cursor:
    """Recursive-descent helper over a token list."""

    def __init__(self, text: str, tokens: list[_Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.i = 0

    def peek(self, ahead: int = 0) -> _Token | None:
        j = self.i + ahead
        return self.tokens[j] if j < len(self.tokens) else None

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def done(self) -> bool:
        return self.i >= len(self.tokens)

    def error(self, expected: str) -> InvalidFilter:
        tok = self.peek()
        return _syntax(self.text, tok.start if tok else len(self.text), expected)

    def identifier(self) -> _Identifier:
        first = self.peek()
        if first is None or first.kind not in _NAME_KINDS:
            raise self.error("a key such as metrics.rmse, params.alpha or tags.`my tag`")
        self.take()
        end, dot_at = first.end, None
        while (tok := self.peek()) is not None and tok.kind == "dot":
            self.take()
            dot_at = tok.start if dot_at is None else dot_at
            end = self.take().end
        raw = self.text[first.start : end]
        if dot_at is None:
            return _Identifier(None, _strip_quotes(raw), raw)
        prefix = self.text[first.start : dot_at]
        return _Identifier(prefix, _strip_quotes(self.text[dot_at + 1 : end]), raw)


def _run_identifier(ident: _Identifier, valid_attributes: Iterable[str]) -> tuple[EntityType, str]:
    if ident.prefix is None:
        entity: EntityType = "attribute"
    else:
        prefix = ident.prefix
        if len(prefix) >= 2 and prefix[0] == prefix[-1] == "`":
            prefix = prefix[1:-1]
        if prefix not in _ENTITY_ALIASES:
            raise InvalidFilter(f"Invalid entity type '{prefix}'. Valid values are {_ENTITY_NAMES}")
        entity = _ENTITY_ALIASES[prefix]
    key = ident.key
    if entity == "attribute":
        if key not in valid_attributes:
            raise InvalidFilter(
                f"Invalid attribute key '{key}' specified. Valid keys are '{_fmt(valid_attributes)}'"
            )
        key = _RUN_ATTRIBUTE_ALIASES.get(key, key)
    elif entity == "dataset" and key not in DATASET_KEYS:
        raise InvalidFilter(
            f"Invalid dataset key '{key}' specified. Valid keys are '{_fmt(DATASET_KEYS)}'"
        )
    return entity, key


def _experiment_identifier(
    ident: _Identifier, valid_attributes: Iterable[str]
) -> tuple[EntityType, str]:
    entity: EntityType = "attribute"
    if ident.prefix is not None:
        if ident.prefix not in _EXPERIMENT_ENTITIES:
            raise InvalidFilter(
                f"Invalid entity type '{ident.prefix}'. "
                f"Valid entity types are {_EXPERIMENT_ENTITIES}"
            )
        entity = "attribute" if ident.prefix == "attribute" else "tag"
    if entity == "attribute" and ident.key not in valid_attributes:
        raise InvalidFilter(
            f"Invalid attribute key '{ident.key}' specified. "
            f"Valid keys are '{_fmt(valid_attributes)}'"
        )
    return entity, ident.key


# --- comparisons --------------------------------------------------------------------


def _comparator(cur: _Cursor) -> str:
    tok = cur.peek()
    if tok is None:
        raise cur.error("a comparison operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, IS NULL)")
    if tok.kind == "op":
        cur.take()
        return tok.text
    if tok.is_word("LIKE", "ILIKE", "IN"):
        cur.take()
        return tok.text.upper()
    nxt = cur.peek(1)
    if tok.is_word("NOT") and nxt is not None and nxt.is_word("LIKE", "ILIKE", "IN"):
        cur.take(), cur.take()
        return "NOT " + nxt.text.upper()
    if tok.is_word("IS"):
        cur.take()
        negated = bool((n := cur.peek()) and n.is_word("NOT"))
        if negated:
            cur.take()
        if not ((n := cur.peek()) and n.is_word("NULL")):
            raise cur.error("NULL after IS / IS NOT")
        cur.take()
        return "IS NOT NULL" if negated else "IS NULL"
    if tok.is_word("OR"):
        raise InvalidFilter(
            f"Invalid clause(s) in filter string: 'OR'. MLflow's search grammar only "
            f"supports comparisons joined by AND; run one search per alternative. "
            f"Filter: {cur.text!r}"
        )
    raise cur.error("a comparison operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, IS NULL)")


def _raw_value(cur: _Cursor, comparator: str) -> _Token | tuple[str, ...] | None:
    """The value token, the parsed ``(...)`` list, or None after IS [NOT] NULL."""
    if comparator in _NULL_CMP:
        return None
    tok = cur.peek()
    if tok is None:
        raise cur.error("a value ('text', \"text\" or a number)")
    if tok.kind != "punct" or tok.text != "(":
        if tok.kind == "punct" or tok.kind == "op":
            raise cur.error("a value ('text', \"text\" or a number)")
        return cur.take()
    start = cur.take().start
    while (t := cur.peek()) is not None and t.kind in ("string", "dquoted", "punct"):
        cur.take()
        if t.text == ")":
            return _literal_list(cur.text[start : t.end])
        if t.text == "(":
            break
    raise InvalidFilter(
        "While parsing a list in the query, expected a non-empty list of string values, "
        f"but got ill-formed list in {cur.text!r}. Write e.g. ('a', 'b')."
    )


def _literal_list(text: str) -> tuple[str, ...]:
    # The text holds only quoted strings, commas and parentheses (checked by the
    # caller), so literal_eval cannot build anything but strings and tuples of them.
    try:
        parsed = ast.literal_eval(text)
    except (SyntaxError, ValueError) as exc:
        raise InvalidFilter(
            "While parsing a list in the query, expected a non-empty list of string "
            f"values, but got ill-formed list: {text}"
        ) from exc
    items = parsed if isinstance(parsed, tuple) else (parsed,)
    if not items:
        raise InvalidFilter(
            "While parsing a list in the query, expected a non-empty list of string "
            "values, but got empty list"
        )
    if not all(isinstance(x, str) for x in items):
        raise InvalidFilter(
            "While parsing a list in the query, expected string value, punctuation, "
            f"or whitespace, but got different type in list: {text}"
        )
    return items


def _string(raw: _Token | tuple[str, ...] | None, what: str) -> str:
    if isinstance(raw, _Token) and raw.kind in ("string", "dquoted"):
        return raw.text[1:-1]
    shown = raw.text if isinstance(raw, _Token) else raw
    if isinstance(raw, _Token) and raw.kind in ("word", "backtick"):
        raise InvalidFilter(
            "Parameter value is either not quoted or unidentified quote types used for "
            f"string value {shown}. Use either single or double quotes."
        )
    raise InvalidFilter(
        f"Expected a quoted string value for {what} (e.g. 'my-value'). Got value {shown}"
    )


def _number(raw: _Token | tuple[str, ...] | None, message: str) -> int | float:
    if not (isinstance(raw, _Token) and raw.kind == "number"):
        shown = raw.text if isinstance(raw, _Token) else raw
        raise InvalidFilter(f"{message}. Found {shown}")
    text = raw.text
    return int(text) if re.fullmatch(r"-?\d+", text) else float(text)


def _check_comparator(comparator: str, valid: frozenset[str], what: str) -> None:
    if comparator not in valid:
        raise InvalidFilter(
            f"Invalid comparator '{comparator}' for {what}: not one of '{_fmt(valid)}'"
        )


def _run_comparison(
    entity: EntityType, key: str, comparator: str, raw: _Token | tuple[str, ...] | None
) -> Comparison:
    """Apply MLflow's per-entity rules for comparators and value types."""
    if comparator in _NULL_CMP and entity not in ("tag", "parameter"):
        raise InvalidFilter(
            "IS NULL / IS NOT NULL is only supported for tags and params, "
            f"not for '{entity}' '{key}'"
        )
    if entity == "metric":
        _check_comparator(comparator, _NUMERIC_CMP, "metrics")
        return Comparison(
            entity, key, comparator, float(_number(raw, "Expected numeric value type for metric"))
        )
    if entity in ("parameter", "tag"):
        _check_comparator(comparator, _KEY_VALUE_CMP, f"{entity}s")
        value = None if comparator in _NULL_CMP else _string(raw, entity)
        return Comparison(entity, key, comparator, value)
    if entity == "attribute" and key in RUN_NUMERIC_ATTRIBUTES:
        _check_comparator(comparator, _NUMERIC_CMP, f"numeric attribute '{key}'")
        message = f"Expected numeric value type for numeric attribute: {key}"
        return Comparison(entity, key, comparator, _number(raw, message))
    _check_comparator(comparator, _STRING_CMP | _LIST_CMP, f"{entity} '{key}'")
    if isinstance(raw, tuple) and entity == "attribute" and key != "run_id":
        raise InvalidFilter(
            "Only ['run_id'] attributes support comparison with a list of quoted string values."
        )
    return Comparison(entity, key, comparator, _list_or_string(comparator, raw, entity, key))


def _list_or_string(
    comparator: str, raw: _Token | tuple[str, ...] | None, entity: str, key: str
) -> str | tuple[str, ...]:
    if comparator in _LIST_CMP:
        if not isinstance(raw, tuple):
            raise InvalidFilter(
                f"{comparator} needs a parenthesised list of quoted strings for {entity} "
                f"'{key}', e.g. {key} {comparator} ('a', 'b')"
            )
        return raw
    if isinstance(raw, tuple):
        raise InvalidFilter(
            f"A list of values needs IN or NOT IN, not '{comparator}' ({entity} '{key}')"
        )
    return _string(raw, "attributes" if entity == "attribute" else f"{entity} attributes")


def _experiment_comparison(
    entity: EntityType, key: str, comparator: str, raw: _Token | tuple[str, ...] | None
) -> Comparison:
    if entity == "tag":
        if comparator in _LIST_CMP:
            _string(raw, "tag")  # MLflow's message for a list given to a tag
        _check_comparator(comparator, _KEY_VALUE_CMP, "experiment tags")
        value = None if comparator in _NULL_CMP else _string(raw, "tag")
        return Comparison(entity, key, comparator, value)
    if comparator in _NULL_CMP:
        raise InvalidFilter(
            f"IS NULL / IS NOT NULL is only supported for tags, not for attribute '{key}'"
        )
    if isinstance(raw, tuple) and key != "experiment_id":
        raise InvalidFilter(
            "Only ['experiment_id'] attributes support comparison with a list of quoted "
            "string values."
        )
    if key in _EXPERIMENT_NUMERIC:
        _check_comparator(comparator, _NUMERIC_CMP, f"numeric attribute '{key}'")
        number = _number(raw, f"Expected numeric value type for numeric attribute: {key}")
        if isinstance(number, float):
            raise InvalidFilter(f"Invalid value for numeric attribute '{key}': {str(number)!r}")
        return Comparison(entity, key, comparator, number)
    if key == "experiment_id":
        _check_comparator(comparator, frozenset({"=", "!="}) | _LIST_CMP, "experiment_id")
    else:
        _check_comparator(comparator, _STRING_CMP, f"string attribute '{key}'")
    return Comparison(entity, key, comparator, _list_or_string(comparator, raw, entity, key))


def _parse(text: str | None, experiments: bool) -> list[Comparison]:
    from evtrack.tracking.validation import check_filter_clauses

    if not text:
        return []
    if text.isspace():
        raise InvalidFilter(f"Invalid filter '{text}'. Could not be parsed.")
    cur = _Cursor(text, _tokenize(text))
    result: list[Comparison] = []
    while not cur.done():
        tok = cur.peek()
        assert tok is not None
        if tok.is_word("AND"):
            cur.take()
            continue
        if tok.is_word("OR", "NOT"):
            raise InvalidFilter(
                f"Invalid clause(s) in filter string: '{tok.text}'. MLflow's search grammar "
                f"only supports comparisons joined by AND. Filter: {text!r}"
            )
        ident = cur.identifier()
        if experiments:
            entity, key = _experiment_identifier(ident, EXPERIMENT_ATTRIBUTES)
        else:
            entity, key = _run_identifier(ident, _RUN_SEARCHABLE)
        comparator = _comparator(cur)
        raw = _raw_value(cur, comparator)
        build = _experiment_comparison if experiments else _run_comparison
        result.append(build(entity, key, comparator, raw))
        check_filter_clauses(len(result), text)
    return result


def parse_filter(filter_string: str | None) -> list[Comparison]:
    """Parse a ``search_runs`` filter into its AND-ed comparisons.

    ``None`` and ``""`` mean "no filter". Raises :class:`InvalidFilter` with MLflow's
    message for anything MLflow rejects (``OR``, parentheses, a comparator that does
    not fit the entity, an unquoted string...).
    """
    return _parse(filter_string, experiments=False)


def parse_experiments_filter(filter_string: str | None) -> list[Comparison]:
    """Parse a ``search_experiments`` filter (``name``, ``experiment_id``,
    ``creation_time``, ``last_update_time``, ``tags.<key>``)."""
    return _parse(filter_string, experiments=True)


# --- order_by -----------------------------------------------------------------------


def _order_clause(clause: str, experiments: bool) -> OrderBy:
    if not isinstance(clause, str):
        raise InvalidFilter(f"Invalid order_by clause {clause!r}: expected a string.")
    try:
        cur = _Cursor(clause, _tokenize(clause))
        ident = cur.identifier()
    except InvalidFilter:
        raise InvalidFilter(f"Invalid order_by clause '{clause}'. Could not be parsed.") from None
    ascending = True
    if (tok := cur.peek()) is not None and tok.kind == "word" and cur.peek(1) is None:
        if not tok.is_word("ASC", "DESC"):
            raise InvalidFilter(
                f"Invalid ordering key in order_by clause '{clause}'. Use ASC or DESC."
            )
        ascending = tok.is_word("ASC")
        cur.take()
    if not cur.done():
        raise InvalidFilter(f"Invalid order_by clause '{clause}'. Could not be parsed.")
    if experiments:
        entity, key = _experiment_identifier(ident, EXPERIMENT_ATTRIBUTES)
        if entity != "attribute":
            raise InvalidFilter(f"Invalid order_by entity: {entity}")
    else:
        entity, key = _run_identifier(ident, _RUN_ORDERABLE)
        if entity == "dataset":
            raise InvalidFilter(f"Invalid identifier type '{entity}'")
    return OrderBy(entity, key, ascending)


def _parse_order_by(order_by: list[str] | None, experiments: bool) -> list[OrderBy]:
    if isinstance(order_by, str):
        raise InvalidFilter(
            f"order_by must be a list of strings, e.g. ['metrics.rmse DESC'], not {order_by!r}"
        )
    parsed = [_order_clause(c, experiments) for c in order_by or []]
    if experiments:  # MLflow checks duplicates for runs only
        return parsed
    seen: set[tuple[str, str]] = set()
    for ob in parsed:
        if (ob.entity_type, ob.key) in seen:
            raise InvalidFilter(f"`order_by` contains duplicate fields: {order_by}")
        seen.add((ob.entity_type, ob.key))
    return parsed


def parse_order_by(order_by: list[str] | None) -> list[OrderBy]:
    """Parse ``search_runs`` ``order_by`` clauses (``"metrics.rmse DESC"``...).

    Attribute aliases are resolved (``created`` is ``start_time``); sorting twice by
    the same field is an error, as in MLflow.
    """
    return _parse_order_by(order_by, experiments=False)


def parse_experiments_order_by(order_by: list[str] | None) -> list[OrderBy]:
    """Parse ``search_experiments`` ``order_by`` clauses (attributes only)."""
    return _parse_order_by(order_by, experiments=True)
