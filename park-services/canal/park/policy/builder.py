"""The point-and-click criteria builder: rule data ⇄ a tree of form fields.

The browser never holds the rule: the builder is a plain form whose field names encode the
tree (``cb.r-0-1.subject`` is the subject of the second item of the first item of the root).
Each change posts the whole form; the server turns it into a ``Node`` tree, applies the action
of the button that was pressed (add / remove a condition or group, add a value), converts the
tree to rule data, validates it with ``rules.parse_rule`` and renders the tree again with each
error beside the node its JSON path points into. Everything here is pure.

``form_to_tree`` / ``tree_to_form`` and ``tree_to_rule`` / ``rule_to_tree`` are inverse:
``tree_to_rule(form_to_tree(tree_to_form(rule_to_tree(r)))) == r`` for every valid rule, except
that empty texts in a list are dropped (an empty input line adds nothing). In the browser, grades
are checkboxes, so a list of grades comes back in their order (A, B, M, C, D), without repeats.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from canal.park.policy.facts import (
    FACTS,
    KNOWN_CERTIFICATIONS,
    NUMERIC_TYPES,
    TAX_CREDIT_GRADES,
    FactType,
)
from canal.park.policy.rules import AS_OF, RuleError

PREFIX = "cb."
ROOT = "r"
GROUPS = ("all", "any", "not")
RATIO = "_ratio"  # the subject of a ratio_min condition (two facts, no single one)
DATE_REF = "=date"  # the reference select's "a given date" choice (not a valid ref name)
WINDOW_OPEN = "window_open"

# Operators offered per kind of subject, the first being the default.
OPS_BY_TYPE: dict[FactType, tuple[str, ...]] = {
    FactType.STR: ("eq", "in", "prefix_in"),
    FactType.NUMBER: ("range", "eq", "in"),
    FactType.INT: ("range", "eq", "in"),
    FactType.DATE: ("range", "years_before", "eq", "in"),
    FactType.CERTS: ("certified",),
}
# Facts whose values come from a closed list: a select / checkboxes instead of free text.
CHOICES: dict[str, tuple[str, ...]] = {"tax_credit_grade": TAX_CREDIT_GRADES}
CERTIFICATION_NAMES = KNOWN_CERTIFICATIONS

MAX_DEPTH = 12  # deeper rules are edited as JSON only
_ID = re.compile(rf"^r(-\d{{1,3}}){{0,{MAX_DEPTH}}}$")
MAX_NODES = 300
_INT = re.compile(r"^[+-]?\d+$")


def depth(data: Any) -> int:
    """How deeply groups nest in rule data (a lone condition: 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, list):
            stack.extend((x, level) for x in item)
        elif isinstance(item, dict):
            for key in GROUPS:
                if key in item:
                    deepest = max(deepest, level + 1)
                    stack.append((item[key], level + 1))
    return deepest


def ops_for(subject: str) -> tuple[str, ...]:
    if subject == RATIO:
        return ("ratio_min",)
    spec = FACTS.get(subject)
    return OPS_BY_TYPE[spec.type] if spec else ()


def subjects() -> list[str]:
    """What a condition can be about: every fact, then the ratio of two facts."""
    return [*FACTS, RATIO]


@dataclasses.dataclass
class Node:
    """A group (``all`` / ``any`` / ``not``) or a condition (``cond``) of the builder."""

    kind: str
    children: list[Node] = dataclasses.field(default_factory=list)
    fields: dict[str, str] = dataclasses.field(default_factory=dict)
    values: list[str] = dataclasses.field(default_factory=list)  # in / prefix_in
    id: str = ROOT
    path: str = "$"  # the JSON path of this node in the rule data

    @property
    def is_group(self) -> bool:
        return self.kind in GROUPS

    def get(self, key: str) -> str:
        return self.fields.get(key, "")

    @property
    def subject(self) -> str:
        return self.get("subject")

    @property
    def op(self) -> str:
        return self.get("op")


def new_condition() -> Node:
    return Node("cond", fields={"subject": "", "op": ""})


# --------------------------------------------------------------------------------------------
# Form state ⇄ tree

FormState = Mapping[str, list[str]]


def _renumber(node: Node, node_id: str = ROOT) -> Node:
    node.id = node_id
    for i, child in enumerate(node.children):
        _renumber(child, f"{node_id}-{i}")
    return node


def form_to_tree(form: FormState) -> Node | None:
    """The builder's tree from posted fields (``None`` when the form has no builder)."""
    nodes: dict[str, Node] = {}
    for key, items in form.items():
        if not key.startswith(PREFIX) or not key.endswith(".kind"):
            continue
        node_id = key[len(PREFIX) : -len(".kind")]
        kind = items[0] if items else ""
        if not _ID.match(node_id) or kind not in (*GROUPS, "cond") or len(nodes) >= MAX_NODES:
            continue
        node = Node(kind, id=node_id)
        if kind == "cond":
            for name in ("subject", "op", "value", "min", "max", "years", "ref", "ref_date"):
                got = form.get(f"{PREFIX}{node_id}.{name}")
                if got:
                    node.fields[name] = got[0].strip()
            for name in ("name", "numerator", "denominator"):
                got = form.get(f"{PREFIX}{node_id}.{name}")
                if got:
                    node.fields[name] = got[0].strip()
            node.values = [v.strip() for v in form.get(f"{PREFIX}{node_id}.values", [])]
            node.values = [v for v in node.values if v]
            _settle_op(node)
        nodes[node_id] = node
    if ROOT not in nodes:
        return None

    def index(node_id: str) -> int:
        return int(node_id.rsplit("-", 1)[1])

    for node_id in sorted(nodes, key=lambda i: (i.count("-"), [int(p) for p in i.split("-")[1:]])):
        if node_id == ROOT:
            continue
        parent = nodes.get(node_id.rsplit("-", 1)[0])
        if parent is not None and parent.is_group:
            parent.children.append(nodes[node_id])
    for node in nodes.values():
        node.children.sort(key=lambda c: index(c.id))
    return _renumber(nodes[ROOT])


def _settle_op(node: Node) -> None:
    """A subject's first operator when the chosen one does not fit it (the subject changed)."""
    allowed = ops_for(node.subject)
    if allowed and node.op not in allowed:
        node.fields["op"] = allowed[0]


def tree_to_form(tree: Node) -> dict[str, list[str]]:
    """The form fields that ``form_to_tree`` reads back as ``tree``."""
    out: dict[str, list[str]] = {}

    def walk(node: Node) -> None:
        out[f"{PREFIX}{node.id}.kind"] = [node.kind]
        if node.kind == "cond":
            for name, value in node.fields.items():
                out[f"{PREFIX}{node.id}.{name}"] = [value]
            if node.values:
                out[f"{PREFIX}{node.id}.values"] = list(node.values)
        for child in node.children:
            walk(child)

    walk(_renumber(tree))
    return out


# --------------------------------------------------------------------------------------------
# Rule data ⇄ tree


def _text(value: object) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _ref_fields(ref: str) -> dict[str, str]:
    if re.match(r"^\d{4}-\d{2}-\d{2}$", ref):
        return {"ref": DATE_REF, "ref_date": ref}
    return {"ref": ref}


def rule_to_tree(data: Any) -> Node:
    """The builder tree of valid rule data (``rules.parse_rule`` accepted it)."""
    return _renumber(_to_node(data))


def _to_node(data: Mapping[str, Any]) -> Node:
    for kind in ("all", "any"):
        if kind in data:
            return Node(kind, children=[_to_node(d) for d in data[kind]])
    if "not" in data:
        return Node("not", children=[_to_node(data["not"])])
    op = data["op"]
    node = Node("cond", fields={"op": op})
    f = node.fields
    match op:
        case "certified":
            f["subject"] = "certifications"
            f["name"] = data["name"]
            f.update(_ref_fields(data.get("on", AS_OF)))
        case "ratio_min":
            f["subject"] = RATIO
            f["numerator"] = data["numerator"]
            f["denominator"] = data["denominator"]
            f["min"] = _text(data["min"])
        case _:
            f["subject"] = data["fact"]
            if op == "eq":
                f["value"] = _text(data["value"])
            elif op in ("in", "prefix_in"):
                items = data["values"] if op == "in" else data["prefixes"]
                node.values = [_text(v) for v in items]
            elif op == "range":
                for bound in ("min", "max"):
                    if bound in data:
                        f[bound] = _text(data[bound])
            elif op == "years_before":
                f["years"] = _text(data["years"])
                f.update(_ref_fields(data.get("date", AS_OF)))
    return node


def _number(raw: str) -> Any:
    """A typed number from an input; anything else stays text for ``parse_rule`` to name."""
    if _INT.match(raw):
        return int(raw)
    try:
        value = float(raw)
    except ValueError:
        return raw
    return value if math.isfinite(value) else raw


def _scalar(subject: str, raw: str) -> Any:
    spec = FACTS.get(subject)
    if spec is not None and spec.type in NUMERIC_TYPES:
        return _number(raw)
    return raw


def _ref(node: Node) -> str:
    ref = node.get("ref") or AS_OF
    return node.get("ref_date") if ref == DATE_REF else ref


def tree_to_rule(tree: Node) -> tuple[Any, list[RuleError]]:
    """Rule data of the tree (for ``parse_rule``) and the problems only the builder sees: a
    ``not`` group must hold exactly one item. Sets every node's JSON ``path``."""
    problems: list[RuleError] = []

    def convert(node: Node, path: str) -> Any:
        node.path = path
        if node.kind in ("all", "any"):
            return {
                node.kind: [
                    convert(c, f"{path}.{node.kind}[{i}]") for i, c in enumerate(node.children)
                ]
            }
        if node.kind == "not":
            if len(node.children) != 1:
                problems.append(
                    RuleError(
                        path,
                        "not_needs_one",
                        "“不满足”组只能包含一个条件或组合(可先放入一个“全部满足”组)",
                        "A “not” group holds exactly one condition or group "
                        "(put several in an “all” group first)",
                    )
                )
                return {"not": {"all": [convert(c, f"{path}.not") for c in node.children]}}
            return {"not": convert(node.children[0], f"{path}.not")}
        return _condition(node)

    return convert(tree, "$"), problems


def _condition(node: Node) -> dict[str, Any]:
    subject, op = node.subject, node.op
    if subject == RATIO:
        out: dict[str, Any] = {"op": "ratio_min"}
        for key in ("numerator", "denominator"):
            out[key] = node.get(key)
        if node.get("min"):
            out["min"] = _number(node.get("min"))
        return out
    if op == "certified":
        return {"op": "certified", "name": node.get("name"), "on": _ref(node)}
    if not op:
        return {"fact": subject}  # parse_rule names what is missing
    out = {"fact": subject, "op": op}
    if op == "eq":
        raw = node.get("value")
        spec = FACTS.get(subject)
        if raw or (spec is not None and spec.type is FactType.STR):
            out["value"] = _scalar(subject, raw)
    elif op == "in":
        out["values"] = [_scalar(subject, v) for v in node.values if v]
    elif op == "prefix_in":
        out["prefixes"] = [v for v in node.values if v]
    elif op == "range":
        for bound in ("min", "max"):
            if node.get(bound):
                out[bound] = _scalar(subject, node.get(bound))
    elif op == "years_before":
        raw = node.get("years")
        out["years"] = int(raw) if _INT.match(raw) else raw
        out["date"] = _ref(node)
    return out


# --------------------------------------------------------------------------------------------
# Actions and errors


def find(tree: Node, node_id: str) -> tuple[Node | None, Node | None]:
    """(node, its parent) by id."""

    def walk(node: Node, parent: Node | None) -> tuple[Node | None, Node | None]:
        if node.id == node_id:
            return node, parent
        for child in node.children:
            hit = walk(child, node)
            if hit[0] is not None:
                return hit
        return None, None

    return walk(tree, None)


def apply_action(tree: Node, action: str) -> tuple[Node, str | None]:
    """Apply a button's action (``add_cond:r-0``, ``add_group:r-0:any``, ``remove:r-0-1``,
    ``add_value:r-0``); answers the new tree and the id of the node to focus."""
    verb, _, rest = action.partition(":")
    target_id, _, arg = rest.partition(":")
    node, parent = find(tree, target_id)
    if node is None:
        return tree, None
    if verb in ("add_cond", "add_group"):
        item = new_condition() if verb == "add_cond" else Node(arg if arg in GROUPS else "all")
        if item.is_group:
            item.children.append(new_condition())
        if not node.is_group:  # adding beside a lone root condition makes it an "all"
            node = _wrap(tree, node, parent)
            if parent is None:
                tree = node
        node.children.append(item)
        _renumber(tree)
        focus = item if item.kind == "cond" else item.children[0]
        return tree, focus.id
    if verb == "remove" and parent is not None:
        index = parent.children.index(node)
        parent.children.remove(node)
        _renumber(tree)
        after = parent.children[min(index, len(parent.children) - 1)] if parent.children else None
        return tree, (after or parent).id
    if verb == "add_value" and node.kind == "cond":
        node.values.append("")
        return tree, node.id
    return tree, None


def _wrap(tree: Node, node: Node, parent: Node | None) -> Node:
    group = Node("all", children=[node])
    if parent is not None:
        parent.children[parent.children.index(node)] = group
    return group


def _nodes(tree: Node) -> Iterable[Node]:
    yield tree
    for child in tree.children:
        yield from _nodes(child)


def error_owner(tree: Node, path: str) -> Node:
    """The deepest node whose JSON path leads to ``path`` (call after ``tree_to_rule``)."""
    best = tree
    for node in _nodes(tree):
        if (path == node.path or path.startswith((node.path + ".", node.path + "["))) and len(
            node.path
        ) > len(best.path):
            best = node
    return best


def field_of(node: Node, path: str) -> str:
    """Which input of a condition an error path names (``min``, ``values``, …), if any."""
    rest = path[len(node.path) :].lstrip(".")
    key = re.split(r"[.\[]", rest, maxsplit=1)[0] if rest else ""
    return {"prefixes": "values", "fact": "subject", "date": "ref", "on": "ref"}.get(key, key)
