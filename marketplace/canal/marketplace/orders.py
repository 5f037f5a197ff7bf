"""The marketplace order state machine, shared by the service supermarket and the model store.

One table, :data:`TRANSITIONS`, lists every allowed ``(state, action, party)`` with the state
it leads to and who is told about it. Anything not in the table is refused by
:func:`transition` with a :class:`TransitionError` naming the current state and the action in
Chinese and English. The diagram is in ``docs/marketplace-core.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from canal.platform.http.errors import CanalError


class OrderState(StrEnum):
    PLACED = "placed"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    DELIVERED = "delivered"
    CONFIRMED = "confirmed"
    DISPUTED = "disputed"
    RESOLVED_REFUNDED_FULL = "resolved_refunded_full"
    RESOLVED_REFUNDED_PARTIAL = "resolved_refunded_partial"
    RESOLVED_NO_REFUND = "resolved_no_refund"
    CANCELLED = "cancelled"


class Action(StrEnum):
    ACCEPT = "accept"
    DECLINE = "decline"
    CANCEL = "cancel"
    START = "start"
    DELIVER = "deliver"
    CONFIRM = "confirm"
    DISPUTE = "dispute"
    RESOLVE_REFUND_FULL = "resolve_refund_full"
    RESOLVE_REFUND_PARTIAL = "resolve_refund_partial"
    RESOLVE_NO_REFUND = "resolve_no_refund"


class Party(StrEnum):
    BUYER = "buyer"
    PROVIDER = "provider"
    OPERATOR = "operator"
    SYSTEM = "system"  # scheduled jobs, e.g. auto-confirm after N days delivered


STATE_LABELS: dict[OrderState, tuple[str, str]] = {
    OrderState.PLACED: ("已下单", "placed"),
    OrderState.ACCEPTED: ("已接单", "accepted"),
    OrderState.IN_PROGRESS: ("服务中", "in progress"),
    OrderState.DELIVERED: ("已交付", "delivered"),
    OrderState.CONFIRMED: ("已确认", "confirmed"),
    OrderState.DISPUTED: ("争议处理中", "disputed"),
    OrderState.RESOLVED_REFUNDED_FULL: ("已裁决:全额退款", "resolved: full refund"),
    OrderState.RESOLVED_REFUNDED_PARTIAL: ("已裁决:部分退款", "resolved: partial refund"),
    OrderState.RESOLVED_NO_REFUND: ("已裁决:不退款", "resolved: no refund"),
    OrderState.CANCELLED: ("已取消", "cancelled"),
}

ACTION_LABELS: dict[Action, tuple[str, str]] = {
    Action.ACCEPT: ("接单", "accept"),
    Action.DECLINE: ("拒单", "decline"),
    Action.CANCEL: ("取消订单", "cancel"),
    Action.START: ("开始服务", "start"),
    Action.DELIVER: ("交付", "deliver"),
    Action.CONFIRM: ("确认完成", "confirm"),
    Action.DISPUTE: ("发起争议", "dispute"),
    Action.RESOLVE_REFUND_FULL: ("裁决全额退款", "resolve with a full refund"),
    Action.RESOLVE_REFUND_PARTIAL: ("裁决部分退款", "resolve with a partial refund"),
    Action.RESOLVE_NO_REFUND: ("裁决不退款", "resolve without a refund"),
}

PARTY_LABELS: dict[Party, tuple[str, str]] = {
    Party.BUYER: ("买方", "the buyer"),
    Party.PROVIDER: ("服务商", "the provider"),
    Party.OPERATOR: ("平台运营方", "the operator"),
    Party.SYSTEM: ("系统", "the system"),
}


@dataclass(frozen=True, slots=True)
class Rule:
    """What an allowed ``(state, action, party)`` leads to, and who is notified."""

    next_state: OrderState
    notify: frozenset[Party]


_S = OrderState
_A = Action
_P = Party
_BUYER = frozenset({_P.BUYER})
_PROVIDER = frozenset({_P.PROVIDER})
_BOTH = frozenset({_P.BUYER, _P.PROVIDER})
_DISPUTE_NOTICE = frozenset({_P.OPERATOR, _P.PROVIDER})

# The one table. Notify the other side; a dispute goes to the operator (and the provider, whose
# order it is); an operator's ruling and a system action go to both buyer and provider.
TRANSITIONS: dict[tuple[OrderState, Action, Party], Rule] = {
    (_S.PLACED, _A.ACCEPT, _P.PROVIDER): Rule(_S.ACCEPTED, _BUYER),
    (_S.PLACED, _A.DECLINE, _P.PROVIDER): Rule(_S.CANCELLED, _BUYER),
    (_S.PLACED, _A.CANCEL, _P.BUYER): Rule(_S.CANCELLED, _PROVIDER),
    (_S.ACCEPTED, _A.START, _P.PROVIDER): Rule(_S.IN_PROGRESS, _BUYER),
    (_S.IN_PROGRESS, _A.DELIVER, _P.PROVIDER): Rule(_S.DELIVERED, _BUYER),
    (_S.IN_PROGRESS, _A.DISPUTE, _P.BUYER): Rule(_S.DISPUTED, _DISPUTE_NOTICE),
    (_S.DELIVERED, _A.CONFIRM, _P.BUYER): Rule(_S.CONFIRMED, _PROVIDER),
    (_S.DELIVERED, _A.CONFIRM, _P.SYSTEM): Rule(_S.CONFIRMED, _BOTH),
    (_S.DELIVERED, _A.DISPUTE, _P.BUYER): Rule(_S.DISPUTED, _DISPUTE_NOTICE),
    (_S.DISPUTED, _A.RESOLVE_REFUND_FULL, _P.OPERATOR): Rule(_S.RESOLVED_REFUNDED_FULL, _BOTH),
    (_S.DISPUTED, _A.RESOLVE_REFUND_PARTIAL, _P.OPERATOR): Rule(
        _S.RESOLVED_REFUNDED_PARTIAL, _BOTH
    ),
    (_S.DISPUTED, _A.RESOLVE_NO_REFUND, _P.OPERATOR): Rule(_S.RESOLVED_NO_REFUND, _BOTH),
}

TERMINAL_STATES: frozenset[OrderState] = frozenset(OrderState) - {
    state for (state, _action, _party) in TRANSITIONS
}

# Default for the scheduled auto-confirm (operator-configurable; passed in, never read here).
DEFAULT_AUTO_CONFIRM_DAYS = 7


class TransitionError(CanalError):
    """An action that the order's current state, or the acting party, does not allow."""


def transition(state: OrderState | str, action: Action | str, party: Party | str) -> OrderState:
    """The state after ``party`` does ``action`` to an order in ``state``, or TransitionError."""
    return rule_for(state, action, party).next_state


def notified(state: OrderState | str, action: Action | str, party: Party | str) -> frozenset[Party]:
    """Who is told when ``party`` does ``action`` in ``state`` (raises like :func:`transition`)."""
    return rule_for(state, action, party).notify


def allowed_actions(state: OrderState | str, party: Party | str) -> list[Action]:
    """The actions ``party`` may take in ``state``, in table order (for showing buttons)."""
    s, p = OrderState(state), Party(party)
    return [a for (st, a, pa) in TRANSITIONS if st is s and pa is p]


def rule_for(state: OrderState | str, action: Action | str, party: Party | str) -> Rule:
    s, a, p = _coerce(state, action, party)
    rule = TRANSITIONS.get((s, a, p))
    if rule is not None:
        return rule
    state_zh, state_en = STATE_LABELS[s]
    action_zh, action_en = ACTION_LABELS[a]
    party_zh, party_en = PARTY_LABELS[p]
    allowed_parties = sorted(pa for (st, ac, pa) in TRANSITIONS if st is s and ac is a)
    if allowed_parties:
        who_zh = "、".join(PARTY_LABELS[x][0] for x in allowed_parties)
        who_en = " or ".join(PARTY_LABELS[x][1] for x in allowed_parties)
        raise TransitionError(
            "order_action_wrong_party",
            f"订单当前为“{state_zh}”,只有{who_zh}可以执行“{action_zh}”,{party_zh}不能执行",
            f"The order is {state_en}: only {who_en} can “{action_en}”, not {party_en}",
            status=403,
        )
    raise TransitionError(
        "order_action_not_allowed",
        f"订单当前为“{state_zh}”,不能执行“{action_zh}”",
        f"The order is {state_en}, so “{action_en}” is not possible",
        status=409,
    )


def auto_confirm_due(delivered_at: datetime, now: datetime, *, days: int) -> bool:
    """Whether a delivered order is due for the system's auto-confirm (``days`` after delivery)."""
    if delivered_at.tzinfo is None or now.tzinfo is None:
        raise ValueError("delivered_at and now must be timezone-aware")
    if days < 1:
        raise ValueError("auto-confirm needs at least one day")
    return now >= delivered_at + timedelta(days=days)


def _coerce(
    state: OrderState | str, action: Action | str, party: Party | str
) -> tuple[OrderState, Action, Party]:
    try:
        return OrderState(state), Action(action), Party(party)
    except ValueError:
        raise TransitionError(
            "order_action_unknown",
            "订单状态或操作无法识别",
            "Unknown order state, action or party",
            status=400,
        ) from None
