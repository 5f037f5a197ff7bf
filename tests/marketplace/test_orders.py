"""The order state machine, table-driven over every state × action × party."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from canal.marketplace.orders import (
    ACTION_LABELS,
    PARTY_LABELS,
    STATE_LABELS,
    TERMINAL_STATES,
    TRANSITIONS,
    Action,
    OrderState,
    Party,
    TransitionError,
    allowed_actions,
    auto_confirm_due,
    notified,
    transition,
)

# The design, written out independently of the code: (state, action, party) → (next, notified).
DESIGN: dict[tuple[str, str, str], tuple[str, set[str]]] = {
    ("placed", "accept", "provider"): ("accepted", {"buyer"}),
    ("placed", "decline", "provider"): ("cancelled", {"buyer"}),
    ("placed", "cancel", "buyer"): ("cancelled", {"provider"}),
    ("accepted", "start", "provider"): ("in_progress", {"buyer"}),
    ("in_progress", "deliver", "provider"): ("delivered", {"buyer"}),
    ("in_progress", "dispute", "buyer"): ("disputed", {"operator", "provider"}),
    ("delivered", "confirm", "buyer"): ("confirmed", {"provider"}),
    ("delivered", "confirm", "system"): ("confirmed", {"buyer", "provider"}),
    ("delivered", "dispute", "buyer"): ("disputed", {"operator", "provider"}),
    ("disputed", "resolve_refund_full", "operator"): (
        "resolved_refunded_full",
        {"buyer", "provider"},
    ),
    ("disputed", "resolve_refund_partial", "operator"): (
        "resolved_refunded_partial",
        {"buyer", "provider"},
    ),
    ("disputed", "resolve_no_refund", "operator"): ("resolved_no_refund", {"buyer", "provider"}),
}

ALL = list(itertools.product(OrderState, Action, Party))


def test_cross_product_is_complete() -> None:
    assert len(ALL) == 10 * 10 * 4
    assert {s.value for s in OrderState} == {
        "placed",
        "accepted",
        "in_progress",
        "delivered",
        "confirmed",
        "disputed",
        "resolved_refunded_full",
        "resolved_refunded_partial",
        "resolved_no_refund",
        "cancelled",
    }
    assert set(Party) == {"buyer", "provider", "operator", "system"}


def test_allowed_set_is_exactly_the_design() -> None:
    allowed = set()
    for state, action, party in ALL:
        try:
            transition(state, action, party)
        except TransitionError:
            continue
        allowed.add((state.value, action.value, party.value))
    assert allowed == set(DESIGN)
    assert {(s.value, a.value, p.value) for (s, a, p) in TRANSITIONS} == set(DESIGN)


@pytest.mark.parametrize(("state", "action", "party"), ALL, ids=lambda x: str(x))
def test_every_combination(state: OrderState, action: Action, party: Party) -> None:
    key = (state.value, action.value, party.value)
    if key in DESIGN:
        next_state, notify = DESIGN[key]
        assert transition(state, action, party) == next_state
        assert isinstance(transition(state, action, party), OrderState)
        assert notified(state, action, party) == notify
        assert party not in notified(state, action, party)  # never notify yourself
        return
    with pytest.raises(TransitionError) as info:
        transition(state, action, party)
    err = info.value
    state_zh, state_en = STATE_LABELS[state]
    action_zh, action_en = ACTION_LABELS[action]
    # Both languages name the current state and the action.
    assert f"“{state_zh}”" in err.zh and f"“{action_zh}”" in err.zh
    assert state_en in err.en and f"“{action_en}”" in err.en
    if any((state.value, action.value, p) in DESIGN for p in Party):
        assert err.code == "order_action_wrong_party"
        assert err.status == 403
        assert PARTY_LABELS[party][0] in err.zh
    else:
        assert err.code == "order_action_not_allowed"
        assert err.status == 409
    with pytest.raises(TransitionError):
        notified(state, action, party)


def test_example_message() -> None:
    with pytest.raises(TransitionError) as info:
        transition(OrderState.DELIVERED, Action.ACCEPT, Party.PROVIDER)
    assert info.value.zh == "订单当前为“已交付”,不能执行“接单”"
    assert info.value.en == "The order is delivered, so “accept” is not possible"


def test_plain_strings_work_and_unknown_values_are_refused() -> None:
    assert transition("placed", "accept", "provider") is OrderState.ACCEPTED
    for bad in [
        ("shipped", "accept", "provider"),
        ("placed", "ship", "provider"),
        ("placed", "accept", "admin"),
    ]:
        with pytest.raises(TransitionError) as info:
            transition(*bad)
        assert info.value.code == "order_action_unknown"


def test_terminal_states_allow_nothing() -> None:
    assert set(TERMINAL_STATES) == {
        OrderState.CONFIRMED,
        OrderState.CANCELLED,
        OrderState.RESOLVED_REFUNDED_FULL,
        OrderState.RESOLVED_REFUNDED_PARTIAL,
        OrderState.RESOLVED_NO_REFUND,
    }
    for state in TERMINAL_STATES:
        for party in Party:
            assert allowed_actions(state, party) == []


def test_every_state_is_reachable_from_placed() -> None:
    seen = {OrderState.PLACED}
    frontier = [OrderState.PLACED]
    while frontier:
        state = frontier.pop()
        for (s, _a, _p), rule in TRANSITIONS.items():
            if s is state and rule.next_state not in seen:
                seen.add(rule.next_state)
                frontier.append(rule.next_state)
    assert seen == set(OrderState)


def test_allowed_actions() -> None:
    assert allowed_actions("placed", "provider") == [Action.ACCEPT, Action.DECLINE]
    assert allowed_actions("placed", "buyer") == [Action.CANCEL]
    assert allowed_actions("delivered", "buyer") == [Action.CONFIRM, Action.DISPUTE]
    assert allowed_actions("delivered", "system") == [Action.CONFIRM]
    assert allowed_actions("disputed", "buyer") == []


def test_labels_cover_everything() -> None:
    assert set(STATE_LABELS) == set(OrderState)
    assert set(ACTION_LABELS) == set(Action)
    assert set(PARTY_LABELS) == set(Party)


def test_auto_confirm_due() -> None:
    t = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
    assert not auto_confirm_due(t, t + timedelta(days=7) - timedelta(seconds=1), days=7)
    assert auto_confirm_due(t, t + timedelta(days=7), days=7)
    with pytest.raises(ValueError):
        auto_confirm_due(t.replace(tzinfo=None), t, days=7)
    with pytest.raises(ValueError):
        auto_confirm_due(t, t, days=0)
