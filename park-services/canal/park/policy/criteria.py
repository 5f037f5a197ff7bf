"""The authority's criteria editor: the point-and-click builder and the live count.

Both the page (htmx) and the JSON twin post the builder's form state; the server converts it
(``builder``), validates the rule (``rules.parse_rule``), places each error beside its node and
counts the subscribed enterprises the rule would match on a chosen day. Counts below
``MIN_REPORTABLE`` are reported as "fewer than 5" (decision 0012).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.enums import MediaType
from litestar.params import JSONBody

from canal.park.policy import builder, services
from canal.park.policy.facts import FACTS, KNOWN_CERTIFICATIONS, NUMERIC_TYPES, FactType
from canal.park.policy.rules import RuleError, parse_rule
from canal.platform.http.errors import FieldError
from canal.platform.http.tenancy import tenant_context
from canal.web.i18n import request_locale
from canal.web.render import render_html

Req = Request[Any, Any, Any]
PUBLISH = {"access": "tenant", "module": "policy", "permission": ("policy", "publish")}
TAGS = ["policy"]

# A count below this is shown as "fewer than 5": narrowing criteria down to one enterprise
# must not tell an authority a fact about it (decision 0012).
MIN_REPORTABLE = 5


def reportable(n: int) -> int | None:
    return n if n >= MIN_REPORTABLE else None


def count_text(n: int | None, locale: str) -> str:
    if n is not None:
        return f"{n} 家" if locale.startswith("zh") else str(n)
    if locale.startswith("zh"):
        return f"少于 {MIN_REPORTABLE} 家"
    return f"fewer than {MIN_REPORTABLE}"


class CountOut(msgspec.Struct):
    """``eligible`` / ``nearly`` are ``null`` when fewer than ``fewer_than`` (never exact)."""

    valid: bool
    as_of: str
    enterprises: int
    eligible: int | None
    nearly: int | None
    fewer_than: int
    eligible_text: str
    nearly_text: str
    errors: list[dict[str, str]]


def _date_or_none(raw: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def parse_as_of(raw: str | None, errors: list[FieldError]) -> dt.date:
    """The count's evaluation day: an ISO date, today when empty."""
    if not raw:
        return services.today()
    day = _date_or_none(raw)
    if day is None or not dt.date(1900, 1, 1) <= day <= dt.date(2200, 12, 31):
        errors.append(
            FieldError(
                "as_of",
                "bad_as_of",
                f"统计日期应为 YYYY-MM-DD 格式的日期,而不是「{raw[:20]}」。",
                f"The count date must be a date as YYYY-MM-DD, not {raw[:20]!r}.",
            )
        )
        return services.today()
    return day


async def live_count(
    request: Req, rule_json: Any, errors: list[FieldError], as_of: dt.date, window_opens: str = ""
) -> CountOut:
    """Count for an authority only: to an enterprise the count would be an oracle over the
    other enterprises' facts. ``window_open`` in the rule is the draft's opening day (or the
    count day while that is not filled in)."""
    services.require_authority(tenant_context(request))
    locale = request_locale(request)
    if errors or rule_json is None:
        return CountOut(
            False,
            as_of.isoformat(),
            0,
            None,
            None,
            MIN_REPORTABLE,
            "",
            "",
            [e.for_locale(locale) for e in errors],
        )
    window_open = _date_or_none(window_opens) or as_of
    eligible, nearly, total = await services.count_matches(
        parse_rule(services.bind_refs(rule_json, {"window_open": window_open})), as_of
    )
    shown_eligible, shown_nearly = reportable(eligible), reportable(nearly)
    return CountOut(
        True,
        as_of.isoformat(),
        total,
        shown_eligible,
        shown_nearly,
        MIN_REPORTABLE,
        count_text(shown_eligible, locale),
        count_text(shown_nearly, locale),
        [],
    )


# --------------------------------------------------------------------------------------------
# The builder's view


@dataclasses.dataclass
class BuilderView:
    tree: builder.Node
    rule: Any
    rule_text: str
    valid: bool
    # node id → [(field, message)]; field "" means the node as a whole
    errors: dict[str, list[tuple[str, str]]]
    problems: list[dict[str, str]]
    focus: str | None = None
    count: CountOut | None = None
    as_of: str = ""
    json_errors: list[str] = dataclasses.field(default_factory=list)


def view_of(tree: builder.Node, locale: str, focus: str | None = None) -> BuilderView:
    """Convert and validate the tree; each problem is placed on its node."""
    rule, problems = builder.tree_to_rule(tree)
    try:
        parse_rule(rule)
    except RuleError as exc:
        problems.append(exc)
    zh = locale.startswith("zh")
    errors: dict[str, list[tuple[str, str]]] = {}
    out: list[dict[str, str]] = []
    for p in problems:
        node = builder.error_owner(tree, p.path)
        field = builder.field_of(node, p.path) if node.kind == "cond" else ""
        message = p.zh if zh else p.en
        errors.setdefault(node.id, []).append((field, message))
        out.append(
            {"node": node.id, "field": field, "path": p.path, "code": p.code, "message": message}
        )
    return BuilderView(
        tree=tree,
        rule=rule,
        rule_text=json.dumps(rule, ensure_ascii=False, indent=2),
        valid=not problems,
        errors=errors,
        problems=out,
        focus=focus,
    )


def problems_as_field_errors(tree: builder.Node) -> list[FieldError]:
    """The builder-only problems (a ``not`` group with several items) as form errors."""
    _, problems = builder.tree_to_rule(tree)
    return [
        FieldError("criteria", f"rule_{p.code}", f"{p.path}:{p.zh}", f"{p.path}: {p.en}")
        for p in problems
    ]


def form_state(form: Any) -> dict[str, list[str]]:
    """A posted form (multi-dict) as name → every string value."""
    return {
        k: [v for v in form.getall(k) if isinstance(v, str)]
        for k in form.keys()  # noqa: SIM118 - a multi-dict's keys, not its first values
    }


def tree_from(state: Mapping[str, list[str]], fallback_json: str) -> builder.Node | None:
    """The posted builder, else the JSON (a form posted without the builder), else empty;
    ``None`` for a rule nested deeper than the builder shows (it is edited as JSON only)."""
    tree = builder.form_to_tree(state)
    if tree is not None:
        return tree
    errors: list[FieldError] = []
    data = services.parse_criteria(fallback_json, errors)
    if data is not None:
        if builder.depth(data) > builder.MAX_DEPTH:
            return None
        return builder.rule_to_tree(data)
    return builder.Node("all", children=[builder.new_condition()])


def too_deep_message(locale: str) -> str:
    if locale.startswith("zh"):
        return f"此规则嵌套超过 {builder.MAX_DEPTH} 层,无法在图形编辑器中显示,请以 JSON 编辑。"
    return (
        f"This rule nests more than {builder.MAX_DEPTH} levels, too deep for the builder; "
        "edit it as JSON."
    )


def template_context(request: Req, view: BuilderView | None) -> dict[str, Any]:
    """What ``policy/_builder.html`` needs besides the view."""
    zh = request_locale(request).startswith("zh")
    return {
        "b": view,
        "base": f"/t/{tenant_context(request).tenant.slug}/m/policy",
        "subjects": [(s, _subject_label(s, zh), _subject_type(s)) for s in builder.subjects()],
        "op_labels": OP_LABELS,
        "ops_for": builder.ops_for,
        "choices": builder.CHOICES,
        "certifications": KNOWN_CERTIFICATIONS,
        "numeric_facts": [
            (n, _subject_label(n, zh)) for n, s in FACTS.items() if s.type in NUMERIC_TYPES
        ],
        "fact_type": _subject_type,
        "DATE_REF": builder.DATE_REF,
    }


def _subject_label(subject: str, zh: bool) -> str:
    if subject == builder.RATIO:
        return "两项指标之比" if zh else "ratio of two figures"
    spec = FACTS.get(subject)
    if spec is None:
        return subject
    label = spec.label_zh if zh else spec.label_en
    unit = spec.unit_zh if zh else spec.unit_en
    return f"{label}({unit})" if zh and unit else f"{label} ({unit})" if unit else label


def _subject_type(subject: str) -> str:
    if subject == builder.RATIO:
        return "ratio"
    spec = FACTS.get(subject)
    if spec is None:
        return ""
    if spec.type in NUMERIC_TYPES:
        return "number"
    return {FactType.STR: "text", FactType.DATE: "date", FactType.CERTS: "certs"}[spec.type]


# English source texts; the templates translate them with _().
OP_LABELS = {
    "eq": "equals",
    "in": "is one of",
    "prefix_in": "starts with one of",
    "range": "is between (inclusive)",
    "years_before": "is at least N years before",
    "certified": "holds a certificate valid on",
    "ratio_min": "is at least",
}


async def build_view(
    request: Req,
    state: Mapping[str, list[str]],
    *,
    action: str = "",
    criteria_text: str | None = None,
    as_of_raw: str = "",
    window_opens: str = "",
) -> BuilderView:
    """The builder after one step: the posted tree, with the JSON view applied
    (``criteria_text``) or a button's ``action`` done, validated and counted."""
    locale = request_locale(request)
    tree = tree_from(state, "") or builder.Node("all", children=[builder.new_condition()])
    json_errors: list[str] = []
    focus = None
    if criteria_text is not None:
        errors: list[FieldError] = []
        data = services.parse_criteria(criteria_text, errors)
        if data is not None and builder.depth(data) > builder.MAX_DEPTH:
            json_errors = [too_deep_message(locale)]
        elif data is not None:
            tree = builder.rule_to_tree(data)
        json_errors += [e.for_locale(locale)["message"] for e in errors]
    elif action:
        tree, focus = builder.apply_action(tree, action)
    view = view_of(tree, locale, focus)
    view.json_errors = json_errors
    count_errors: list[FieldError] = []
    as_of = parse_as_of(as_of_raw, count_errors)
    view.as_of = as_of_raw if count_errors else as_of.isoformat()
    rule_errors: list[FieldError] = (
        []
        if view.valid
        else [
            FieldError(
                "criteria",
                "rule_invalid",
                "申报条件有误(见各条件旁的说明)。",
                "The criteria have errors (see beside each condition).",
            )
        ]
    )
    view.count = await live_count(
        request,
        view.rule if view.valid else None,
        count_errors + rule_errors,
        as_of,
        window_opens,
    )
    return view


# --------------------------------------------------------------------------------------------
# Routes


@get("/criteria/count", opt=PUBLISH, tags=TAGS, summary="Live count for a draft rule")
async def count_api(
    request: Req, criteria: str = "", as_of: str = "", window_opens: str = ""
) -> CountOut:
    """How many subscribed enterprises the rule (JSON text) matches on ``as_of`` (today by
    default): eligible / nearly eligible; below 5 only "fewer than 5" (``null``)."""
    errors: list[FieldError] = []
    day = parse_as_of(as_of, errors)
    rule_json = services.parse_criteria(criteria, errors)
    return await live_count(request, rule_json, errors, day, window_opens)


@get("/criteria/count", opt=PUBLISH, include_in_schema=False)
async def count_fragment(request: Req) -> Response[str]:
    q = request.query_params
    errors: list[FieldError] = []
    day = parse_as_of(q.get("as_of", ""), errors)
    rule_json = services.parse_criteria(q.get("criteria", ""), errors)
    count = await live_count(request, rule_json, errors, day, q.get("window_opens", ""))
    html = render_html(request, "policy/_count.html", {"count": count}, "count")
    return Response(html, media_type=MediaType.HTML)


@post("/criteria/builder", opt=PUBLISH, include_in_schema=False)
async def builder_fragment(request: Req) -> Response[str]:
    """One builder step (htmx): answers the builder's inside, the count, and the JSON view
    (out of band, unless the JSON view itself was edited)."""
    form = await request.form()
    state = form_state(form)
    action = str(form.get("_action") or "")
    from_json = action == "from_json"
    view = await build_view(
        request,
        state,
        action="" if from_json else action,
        criteria_text=str(form.get("criteria") or "") if from_json else None,
        as_of_raw=str(form.get("count_as_of") or ""),
        window_opens=str(form.get("window_opens") or ""),
    )
    html = render_html(
        request,
        "policy/_builder.html",
        {**template_context(request, view), "oob_json": not from_json},
        "builder",
    )
    return Response(html, media_type=MediaType.HTML, status_code=200)


class BuilderIn(msgspec.Struct, forbid_unknown_fields=True):
    form: dict[str, list[str]] = {}
    action: str = ""
    criteria: Any = None
    as_of: str = ""
    window_opens: str = ""


class BuilderOut(msgspec.Struct):
    valid: bool
    criteria: Any
    errors: list[dict[str, str]]
    form: dict[str, list[str]]
    focus: str | None
    count: CountOut


@post(
    "/criteria/builder",
    opt=PUBLISH,
    tags=TAGS,
    summary="One step of the criteria builder",
    status_code=200,
)
async def builder_api(request: Req, data: JSONBody[BuilderIn]) -> BuilderOut:
    """The builder's form state (``cb.<node>.<field>`` → values) and a button ``action``
    (``add_cond:r``, ``add_group:r-1:any``, ``remove:r-0``, ``add_value:r-0``) → the new
    state, the rule it makes, errors by node and the live count. Give ``criteria`` (a rule)
    instead of ``form`` to get the form state of a rule."""
    text = None
    if data.criteria is not None:
        text = data.criteria if isinstance(data.criteria, str) else json.dumps(data.criteria)
    view = await build_view(
        request,
        data.form,
        action=data.action,
        criteria_text=text,
        as_of_raw=data.as_of,
        window_opens=data.window_opens,
    )
    errors = [
        {"node": "", "field": "criteria", "path": "", "code": "criteria_json", "message": m}
        for m in view.json_errors
    ] or view.problems
    assert view.count is not None
    return BuilderOut(
        view.valid and not view.json_errors,
        view.rule,
        errors,
        builder.tree_to_form(view.tree),
        view.focus,
        view.count,
    )


PAGE_ROUTES = [count_fragment, builder_fragment]
API_ROUTES = [count_api, builder_api]
