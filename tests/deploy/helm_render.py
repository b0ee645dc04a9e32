"""A small renderer for the subset of Helm's Go templates the erm-bot chart uses.

``helm`` is not installed everywhere the tests run, yet the rendered manifests must be checked
(probes, non-root, no secret in a ConfigMap). This renders ``deploy/helm/erm-bot`` the way
``helm template`` does for the constructs the chart uses, and fails loudly on anything else, so
a template using something new is noticed here rather than rendered wrongly:

- actions ``{{ }}`` with ``{{-`` / ``-}}`` whitespace trimming and ``{{/* comments */}}``;
- ``if`` / ``else if`` / ``else``, ``range`` (with ``$key, $value :=``), ``with``, ``define``,
  ``include``, variables (``$``, ``$name :=``), fields (``.Values.a.b``, ``$.Values``);
- pipelines and the functions listed in ``FUNCTIONS``, with Go's truth rules.

Where ``helm`` is installed the tests also run ``helm lint`` and ``helm template`` and check
helm's own output the same way.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class TemplateError(Exception):
    """The template uses something this renderer does not know, or a function failed."""


_ACTION = re.compile(r"\{\{(-\s+)?(.*?)(\s+-)?\}\}", re.DOTALL)
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*")
      | (?P<raw>`[^`]*`)
      | (?P<num>-?\d+(?:\.\d+)?)
      | (?P<lp>\()
      | (?P<rp>\))
      | (?P<pipe>\|)
      | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
      | (?P<field>\.(?:[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)?)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_ASSIGN = re.compile(r"^(\$[A-Za-z0-9_]+)\s*:=\s*(.+)$", re.DOTALL)
_RANGE_VARS = re.compile(r"^(\$[A-Za-z0-9_]+)\s*,\s*(\$[A-Za-z0-9_]+)\s*:=\s*(.+)$", re.DOTALL)


# -- parsing ------------------------------------------------------------------------------------


@dataclass
class Text:
    text: str


@dataclass
class Action:
    pipeline: list[list[Any]]
    assign: str | None = None


@dataclass
class If:
    branches: list[tuple[list[list[Any]], list[Any]]]
    otherwise: list[Any] = field(default_factory=list)


@dataclass
class Range:
    key: str | None
    value: str | None
    pipeline: list[list[Any]]
    body: list[Any]
    otherwise: list[Any] = field(default_factory=list)


@dataclass
class With:
    pipeline: list[list[Any]]
    body: list[Any]
    otherwise: list[Any] = field(default_factory=list)


def _items(source: str) -> list[tuple[str, str]]:
    """("text", s) and ("action", s) pieces, with trim markers applied to the text."""
    pieces: list[tuple[str, str]] = []
    position = 0
    trim_next = False
    for match in _ACTION.finditer(source):
        text = source[position : match.start()]
        if trim_next:
            text = text.lstrip()
        if match.group(1):
            text = text.rstrip()
        pieces.append(("text", text))
        pieces.append(("action", match.group(2).strip()))
        trim_next = bool(match.group(3))
        position = match.end()
    tail = source[position:]
    pieces.append(("text", tail.lstrip() if trim_next else tail))
    return pieces


def _tokens(expression: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    expression = expression.rstrip()
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None or match.end() == position:
            raise TemplateError(f"cannot read {expression[position:]!r} in {expression!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _pipeline(tokens: list[tuple[str, str]], start: int = 0) -> tuple[list[list[Any]], int]:
    commands: list[list[Any]] = [[]]
    index = start
    while index < len(tokens):
        kind, value = tokens[index]
        if kind == "rp":
            break
        if kind == "pipe":
            commands.append([])
        elif kind == "lp":
            inner, index = _pipeline(tokens, index + 1)
            if index >= len(tokens) or tokens[index][0] != "rp":
                raise TemplateError("unbalanced parenthesis")
            commands[-1].append(("sub", inner))
        elif kind == "str":
            commands[-1].append(("lit", json.loads(value)))
        elif kind == "raw":
            commands[-1].append(("lit", value[1:-1]))
        elif kind == "num":
            commands[-1].append(("lit", float(value) if "." in value else int(value)))
        else:
            commands[-1].append((kind, value))
        index += 1
    if any(not command for command in commands):
        raise TemplateError("empty command in a pipeline")
    return commands, index


def parse_pipeline(expression: str) -> list[list[Any]]:
    commands, end = _pipeline(_tokens(expression))
    tokens = _tokens(expression)
    if end != len(tokens):
        raise TemplateError(f"unexpected ')' in {expression!r}")
    return commands


def parse(source: str, defines: dict[str, list[Any]]) -> list[Any]:
    """The node list of ``source``; ``define`` blocks go into ``defines``."""
    pieces = _items(source)
    nodes, index, stop = _parse_nodes(pieces, 0, defines)
    if stop is not None:
        raise TemplateError(f"unexpected {{{{ {stop} }}}}")
    assert index == len(pieces)
    return nodes


def _parse_nodes(
    pieces: list[tuple[str, str]], index: int, defines: dict[str, list[Any]]
) -> tuple[list[Any], int, str | None]:
    """Nodes until an ``end`` / ``else`` (returned as the stop word) or the end of input."""
    nodes: list[Any] = []
    while index < len(pieces):
        kind, value = pieces[index]
        index += 1
        if kind == "text":
            if value:
                nodes.append(Text(value))
            continue
        if value.startswith("/*"):
            if not value.endswith("*/"):
                raise TemplateError(f"unterminated comment {value!r}")
            continue
        word, _, rest = value.partition(" ")
        rest = rest.strip()
        if word in ("end", "else"):
            return nodes, index, value
        if word == "if":
            node = If([])
            condition = parse_pipeline(rest)
            while True:
                body, index, stop = _parse_nodes(pieces, index, defines)
                node.branches.append((condition, body))
                if stop is None:
                    raise TemplateError("if without end")
                if stop == "end":
                    break
                if stop == "else":
                    node.otherwise, index, stop = _parse_nodes(pieces, index, defines)
                    if stop != "end":
                        raise TemplateError("else without end")
                    break
                if stop.startswith("else if "):
                    condition = parse_pipeline(stop.removeprefix("else if ").strip())
                    continue
                raise TemplateError(f"unexpected {stop!r} in if")
            nodes.append(node)
        elif word in ("range", "with"):
            key = val = None
            expression = rest
            if word == "range":
                both = _RANGE_VARS.match(rest)
                single = _ASSIGN.match(rest)
                if both:
                    key, val, expression = both.group(1), both.group(2), both.group(3)
                elif single:
                    val, expression = single.group(1), single.group(2)
            body, index, stop = _parse_nodes(pieces, index, defines)
            otherwise: list[Any] = []
            if stop == "else":
                otherwise, index, stop = _parse_nodes(pieces, index, defines)
            if stop != "end":
                raise TemplateError(f"{word} without end")
            pipeline = parse_pipeline(expression)
            if word == "range":
                nodes.append(Range(key, val, pipeline, body, otherwise))
            else:
                nodes.append(With(pipeline, body, otherwise))
        elif word == "define":
            name = json.loads(rest)
            body, index, stop = _parse_nodes(pieces, index, defines)
            if stop != "end":
                raise TemplateError(f"define {name} without end")
            defines[name] = body
        elif word in ("template", "block", "break", "continue"):
            raise TemplateError(f"{word} is not supported by this renderer")
        else:
            assign = _ASSIGN.match(value)
            if assign:
                nodes.append(Action(parse_pipeline(assign.group(2)), assign.group(1)))
            else:
                nodes.append(Action(parse_pipeline(value)))
    return nodes, index, None


# -- evaluation ---------------------------------------------------------------------------------


def truthy(value: Any) -> bool:
    """Go template truth: false, 0, nil and empty strings, lists and maps are false."""
    if value is None or value is False:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0
    if isinstance(value, str | list | tuple | dict):
        return len(value) > 0
    return True


def go_string(value: Any) -> str:
    """How Go prints a scalar in a template (helm turns a missing value into "")."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str | int | float):
        return str(value)
    raise TemplateError(f"printing a {type(value).__name__} directly: use toYaml")


def _indent(spaces: int, text: str) -> str:
    pad = " " * int(spaces)
    return pad + text.replace("\n", "\n" + pad)


def _to_yaml(value: Any) -> str:
    if value is None:
        return "null"
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=True).rstrip("\n")


def _printf(template: str, *args: Any) -> str:
    converted = re.sub(r"%[vsd]", "%s", template)
    return converted % tuple(go_string(a) for a in args)


def _required(message: str, value: Any) -> Any:
    if not truthy(value):
        raise TemplateError(f"required: {message}")
    return value


def _fail(message: str) -> Any:
    raise TemplateError(f"fail: {message}")


def _and(*values: Any) -> Any:
    for value in values:
        if not truthy(value):
            return value
    return values[-1]


def _or(*values: Any) -> Any:
    for value in values:
        if truthy(value):
            return value
    return values[-1]


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "default": lambda fallback, value=None: value if truthy(value) else fallback,
    "trunc": lambda n, s: go_string(s)[: int(n)],
    "trimSuffix": lambda suffix, s: go_string(s).removesuffix(suffix),
    "contains": lambda part, s: part in go_string(s),
    "replace": lambda old, new, s: go_string(s).replace(old, new),
    "printf": _printf,
    "quote": lambda *values: " ".join(json.dumps(go_string(v), ensure_ascii=False) for v in values),
    "toString": go_string,
    "b64enc": lambda s: base64.b64encode(go_string(s).encode()).decode(),
    "sha256sum": lambda s: hashlib.sha256(go_string(s).encode()).hexdigest(),
    "toYaml": _to_yaml,
    "toJson": lambda v: json.dumps(v, separators=(",", ":"), sort_keys=True),
    "indent": _indent,
    "nindent": lambda n, s: "\n" + _indent(n, s),
    "and": _and,
    "or": _or,
    "not": lambda v: not truthy(v),
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "empty": lambda v: not truthy(v),
    "required": _required,
    "fail": _fail,
}


@dataclass
class Scope:
    dot: Any
    variables: dict[str, Any]


class Renderer:
    def __init__(self, defines: dict[str, list[Any]], root: Mapping[str, Any]) -> None:
        self.defines = defines
        self.root = root

    def render(self, nodes: list[Any], dot: Any) -> str:
        return self._nodes(nodes, Scope(dot, {"$": dot}))

    def _nodes(self, nodes: list[Any], scope: Scope) -> str:
        out: list[str] = []
        for node in nodes:
            if isinstance(node, Text):
                out.append(node.text)
            elif isinstance(node, Action):
                value = self._pipeline(node.pipeline, scope)
                if node.assign is not None:
                    scope.variables[node.assign] = value
                else:
                    out.append(go_string(value))
            elif isinstance(node, If):
                for condition, body in node.branches:
                    if truthy(self._pipeline(condition, scope)):
                        out.append(self._nodes(body, Scope(scope.dot, dict(scope.variables))))
                        break
                else:
                    out.append(self._nodes(node.otherwise, Scope(scope.dot, dict(scope.variables))))
            elif isinstance(node, With):
                value = self._pipeline(node.pipeline, scope)
                if truthy(value):
                    out.append(self._nodes(node.body, Scope(value, dict(scope.variables))))
                else:
                    out.append(self._nodes(node.otherwise, Scope(scope.dot, dict(scope.variables))))
            elif isinstance(node, Range):
                out.append(self._range(node, scope))
            else:  # pragma: no cover - the parser makes nothing else
                raise TemplateError(f"unknown node {node!r}")
        return "".join(out)

    def _range(self, node: Range, scope: Scope) -> str:
        value = self._pipeline(node.pipeline, scope)
        if not truthy(value):
            return self._nodes(node.otherwise, Scope(scope.dot, dict(scope.variables)))
        pairs: Iterator[tuple[Any, Any]]
        if isinstance(value, dict):
            pairs = ((k, value[k]) for k in sorted(value))  # Go ranges over sorted map keys
        elif isinstance(value, list | tuple):
            pairs = iter(enumerate(value))
        else:
            raise TemplateError(f"range over a {type(value).__name__}")
        out: list[str] = []
        for key, item in pairs:
            variables = dict(scope.variables)
            if node.key:
                variables[node.key] = key
            if node.value:
                variables[node.value] = item
            out.append(self._nodes(node.body, Scope(item, variables)))
        return "".join(out)

    def _pipeline(self, commands: list[list[Any]], scope: Scope) -> Any:
        value: Any = _NOTHING
        for command in commands:
            value = self._command(command, scope, value)
        return value

    def _command(self, command: list[Any], scope: Scope, piped: Any) -> Any:
        head = command[0]
        if head[0] == "ident" and head[1] not in ("true", "false", "nil"):
            name = head[1]
            args = [self._operand(op, scope) for op in command[1:]]
            if piped is not _NOTHING:
                args.append(piped)
            if name == "include":
                template, dot = args
                if template not in self.defines:
                    raise TemplateError(f"include of undefined template {template!r}")
                return self.render(self.defines[template], dot)
            function = FUNCTIONS.get(name)
            if function is None:
                raise TemplateError(f"function {name!r} is not supported by this renderer")
            try:
                return function(*args)
            except TemplateError:
                raise
            except Exception as exc:
                raise TemplateError(f"{name}{tuple(args)!r}: {exc}") from exc
        if len(command) != 1 or piped is not _NOTHING:
            raise TemplateError(f"cannot call {head!r}")
        return self._operand(head, scope)

    def _operand(self, operand: tuple[str, Any], scope: Scope) -> Any:
        kind, value = operand
        if kind == "lit":
            return value
        if kind == "sub":
            return self._pipeline(value, scope)
        if kind == "ident":
            return {"true": True, "false": False, "nil": None}[value]
        if kind == "field":
            return _walk(scope.dot, value.split(".")[1:] if value != "." else [])
        if kind == "var":
            name, *path = value.split(".")
            if name not in scope.variables:
                raise TemplateError(f"undefined variable {name}")
            return _walk(scope.variables[name], path)
        raise TemplateError(f"unexpected {kind} {value!r}")


_NOTHING = object()


def _walk(value: Any, path: list[str]) -> Any:
    for part in path:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise TemplateError(f"field {part} of a {type(value).__name__}")
        value = value.get(part)
    return value


# -- the chart ----------------------------------------------------------------------------------


def merge(base: Any, override: Any) -> Any:
    """Helm's values merge: maps merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base.get(key), value) if key in base else value
        return merged
    return override


@dataclass
class Rendered:
    """The chart rendered: each template's text and its YAML documents."""

    texts: dict[str, str]
    documents: list[dict[str, Any]]
    notes: str

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.documents if d.get("kind") == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of_kind(kind)
        if len(found) != 1:
            raise AssertionError(f"expected one {kind}, found {len(found)}")
        return found[0]


def render_chart(
    chart: Path,
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "erm-bot",
    namespace: str = "default",
) -> Rendered:
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    defaults = yaml.safe_load((chart / "values.yaml").read_text()) or {}
    root = {
        "Values": merge(defaults, dict(values or {})),
        "Release": {"Name": release, "Namespace": namespace, "Service": "Helm"},
        "Chart": {
            "Name": meta["name"],
            "Version": meta["version"],
            "AppVersion": meta["appVersion"],
        },
    }
    defines: dict[str, list[Any]] = {}
    templates = sorted((chart / "templates").iterdir())
    parsed = {path.name: parse(path.read_text(), defines) for path in templates}
    renderer = Renderer(defines, root)
    texts: dict[str, str] = {}
    documents: list[dict[str, Any]] = []
    notes = ""
    for name, nodes in parsed.items():
        text = renderer.render(nodes, root)
        if name == "NOTES.txt":
            notes = text
            continue
        if name.startswith("_"):
            if text.strip():
                raise TemplateError(f"{name} renders text outside define blocks")
            continue
        texts[name] = text
        for document in yaml.safe_load_all(text):
            if document is not None:
                documents.append(document)
    return Rendered(texts, documents, notes)
