"""Money: price parsing, formatting, checkout settlement and partial refunds, to the fen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canal.marketplace.money import (
    MAX_PRICE_FEN,
    PriceError,
    RefundError,
    RefundPolicy,
    Settlement,
    Voucher,
    VoucherError,
    VoucherKind,
    apply_vouchers,
    commission_for,
    format_cny,
    parse_price,
    payout_routes,
    refund,
    round_half_up_div,
    settle,
    stripe_fee,
)

CST = timezone(timedelta(hours=8))
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=CST)


def voucher(
    amount_fen: int,
    *,
    categories: frozenset[str] = frozenset({"legal"}),
    expires_at: datetime = NOW + timedelta(days=30),
) -> Voucher:
    return Voucher("CX-2026-0001", VoucherKind.INNOVATION, amount_fen, categories, expires_at)


# --- parse_price ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("1234", 123_400),
        ("1234.5", 123_450),
        ("1234.56", 123_456),
        ("1,234.56", 123_456),
        ("¥1234.56", 123_456),
        ("￥1,234.56", 123_456),
        ("  ¥ 1234.56 ", 123_456),
        ("0", 0),
        ("0.01", 1),
        ("0.10", 10),
        ("007", 700),
        ("1,000,000", 100_000_000),
        ("10,000,000", MAX_PRICE_FEN),
        ("10000000.00", MAX_PRICE_FEN),
    ],
)
def test_parse_price_accepts(text: str, fen: int) -> None:
    assert parse_price(text) == fen


@pytest.mark.parametrize(
    ("text", "code", "zh", "en"),
    [
        ("", "price_empty", "请填写价格", "Please enter a price"),
        ("   ", "price_empty", "请填写价格", "Please enter a price"),
        ("¥", "price_empty", "请填写价格", "Please enter a price"),
        (
            "1.234",
            "price_too_many_decimals",
            "价格最多保留两位小数",
            "Prices have at most two decimals",
        ),
        (
            "0.001",
            "price_too_many_decimals",
            "价格最多保留两位小数",
            "Prices have at most two decimals",
        ),
        ("-1", "price_negative", "价格不能为负数", "Prices cannot be negative"),
        ("¥-1.00", "price_negative", "价格不能为负数", "Prices cannot be negative"),
        ("−5", "price_negative", "价格不能为负数", "Prices cannot be negative"),
        (
            "10000000.01",
            "price_too_large",
            "价格不能超过 ¥10,000,000.00",
            "Prices cannot exceed ¥10,000,000.00",
        ),
        (
            "99999999999999999999999",
            "price_too_large",
            "价格不能超过 ¥10,000,000.00",
            "Prices cannot exceed ¥10,000,000.00",
        ),
        (
            "9" * 5000,
            "price_too_large",
            "价格不能超过 ¥10,000,000.00",
            "Prices cannot exceed ¥10,000,000.00",
        ),
        (
            "１２３",
            "price_non_ascii_digits",
            "价格请使用半角数字 0-9",
            "Prices use the digits 0-9 only",
        ),
        (
            "١٢٣",
            "price_non_ascii_digits",
            "价格请使用半角数字 0-9",
            "Prices use the digits 0-9 only",
        ),
        (
            "12３.00",
            "price_non_ascii_digits",
            "价格请使用半角数字 0-9",
            "Prices use the digits 0-9 only",
        ),
        (
            "1e5",
            "price_malformed",
            "价格格式不正确,例如:1234.56",
            "That is not a price; for example: 1234.56",
        ),
    ],
)
def test_parse_price_refuses(text: str, code: str, zh: str, en: str) -> None:
    with pytest.raises(PriceError) as info:
        parse_price(text)
    assert (info.value.code, info.value.zh, info.value.en) == (code, zh, en)
    assert info.value.status == 422
    field = info.value.field_error("price")
    assert (field.field, field.code, field.zh) == ("price", code, zh)


@pytest.mark.parametrize(
    "text",
    [
        "abc",
        "1,23",
        "12,3456",
        ",123",
        "1.",
        ".5",
        "+5",
        "1 234",
        "1.2.3",
        "NaN",
        "inf",
        "1_000",
        "¥¥1",
        "0x10",
        "1,234,56",
        "12.3元",
    ],
)
def test_parse_price_refuses_malformed(text: str) -> None:
    with pytest.raises(PriceError) as info:
        parse_price(text)
    assert info.value.code == "price_malformed"


# --- format_cny -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fen", "text"),
    [
        (0, "¥0.00"),
        (1, "¥0.01"),
        (10, "¥0.10"),
        (123_456, "¥1,234.56"),
        (MAX_PRICE_FEN, "¥10,000,000.00"),
        (-150, "-¥1.50"),
        (99_999, "¥999.99"),
    ],
)
def test_format_cny(fen: int, text: str) -> None:
    assert format_cny(fen) == text


def test_format_cny_refuses_floats() -> None:
    with pytest.raises(TypeError):
        format_cny(1.5)
    with pytest.raises(TypeError):
        format_cny(True)


@given(st.integers(min_value=0, max_value=MAX_PRICE_FEN))
def test_format_then_parse_round_trips(fen: int) -> None:
    assert parse_price(format_cny(fen)) == fen


# --- rounding ---------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=10**15), st.integers(min_value=1, max_value=10**6))
def test_round_half_up_matches_decimal(n: int, d: int) -> None:
    expected = int((Decimal(n) / Decimal(d)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    assert round_half_up_div(n, d) == expected


@pytest.mark.parametrize(
    ("price", "bp", "commission"),
    [
        (50, 100, 1),  # 0.5 fen → 1 (half up, not to even)
        (150, 100, 2),  # 1.5 → 2
        (250, 100, 3),  # 2.5 → 3 (banker's would give 2)
        (49, 100, 0),  # 0.49 → 0
        (10_000, 0, 0),
        (10_000, 10_000, 10_000),
        (123_456, 500, 6_173),  # 6172.8 → 6173
        (99_999, 3_000, 30_000),  # 29999.7 → 30000
    ],
)
def test_commission_rounding(price: int, bp: int, commission: int) -> None:
    assert commission_for(price, bp) == commission


# --- settle -----------------------------------------------------------------------------------


def check_invariants(s: Settlement) -> None:
    assert s.buyer_paid_fen + s.voucher_subsidy_fen == s.list_price_fen
    assert s.payout_fen + s.commission_fen == s.list_price_fen
    remaining = s.list_price_fen - s.refunded_fen
    assert s.buyer_paid_remaining_fen + s.voucher_subsidy_remaining_fen == remaining
    assert s.payout_remaining_fen + s.commission_remaining_fen == remaining
    for value in (
        s.buyer_paid_fen,
        s.voucher_subsidy_fen,
        s.payout_fen,
        s.commission_fen,
        s.refunded_fen,
        s.buyer_refunded_fen,
        s.voucher_refunded_fen,
        s.commission_reversed_fen,
        s.payout_reversed_fen,
        s.buyer_paid_remaining_fen,
        s.voucher_subsidy_remaining_fen,
        s.payout_remaining_fen,
        s.commission_remaining_fen,
        remaining,
    ):
        assert isinstance(value, int) and value >= 0


def test_settle_without_voucher() -> None:
    s = settle(123_456, commission_rate_bp=500, voucher=None, category="legal")
    assert (s.buyer_paid_fen, s.voucher_subsidy_fen, s.commission_fen, s.payout_fen) == (
        123_456,
        0,
        6_173,
        117_283,
    )
    assert s.voucher_code is None
    check_invariants(s)


def test_settle_with_voucher_pays_part() -> None:
    s = settle(100_000, commission_rate_bp=800, voucher=voucher(30_000), category="legal", at=NOW)
    assert (s.buyer_paid_fen, s.voucher_subsidy_fen) == (70_000, 30_000)
    # Commission is on the full list price, whatever the voucher pays.
    assert (s.commission_fen, s.payout_fen) == (8_000, 92_000)
    assert s.voucher_code == "CX-2026-0001"


def test_voucher_never_pays_more_than_the_price() -> None:
    s = settle(20_000, commission_rate_bp=800, voucher=voucher(30_000), category="legal", at=NOW)
    assert (s.buyer_paid_fen, s.voucher_subsidy_fen) == (0, 20_000)
    check_invariants(s)


def test_expired_voucher_is_refused() -> None:
    v = voucher(30_000, expires_at=NOW)
    with pytest.raises(VoucherError) as info:
        settle(100_000, commission_rate_bp=800, voucher=v, category="legal", at=NOW)
    assert info.value.code == "voucher_expired"
    assert "创新券" in info.value.zh and "过期" in info.value.zh
    assert "innovation voucher expired" in info.value.en
    # One second before the expiry it still works.
    ok = settle(
        100_000, commission_rate_bp=800, voucher=v, category="legal", at=NOW - timedelta(seconds=1)
    )
    assert ok.voucher_subsidy_fen == 30_000


def test_expiry_compares_instants_across_time_zones() -> None:
    v = voucher(100, expires_at=datetime(2027, 1, 1, tzinfo=CST))  # = 2026-12-31T16:00Z
    with pytest.raises(VoucherError):
        settle(
            1_000,
            commission_rate_bp=0,
            voucher=v,
            category="legal",
            at=datetime(2026, 12, 31, 16, 0, tzinfo=UTC),
        )
    settle(
        1_000,
        commission_rate_bp=0,
        voucher=v,
        category="legal",
        at=datetime(2026, 12, 31, 15, 59, tzinfo=UTC),
    )


def test_ineligible_voucher_is_refused() -> None:
    with pytest.raises(VoucherError) as info:
        settle(100_000, commission_rate_bp=800, voucher=voucher(30_000), category="tax", at=NOW)
    assert info.value.code == "voucher_not_eligible"
    assert info.value.zh == "该创新券不适用于此类服务"
    assert info.value.en == "This innovation voucher cannot be used for this kind of service"


def test_settle_refuses_programming_errors() -> None:
    with pytest.raises(ValueError):
        settle(100, commission_rate_bp=800, voucher=voucher(1), category="legal")  # no `at`
    with pytest.raises(ValueError):
        settle(
            100,
            commission_rate_bp=800,
            voucher=voucher(1),
            category="legal",
            at=NOW.replace(tzinfo=None),
        )
    with pytest.raises(ValueError):
        settle(100, commission_rate_bp=10_001, voucher=None, category="legal")
    with pytest.raises(ValueError):
        settle(-1, commission_rate_bp=0, voucher=None, category="legal")
    with pytest.raises(ValueError):
        settle(MAX_PRICE_FEN + 1, commission_rate_bp=0, voucher=None, category="legal")
    with pytest.raises(TypeError):
        settle(1.5, commission_rate_bp=0, voucher=None, category="legal")
    with pytest.raises(ValueError):
        Voucher("x", VoucherKind.SERVICE, 0, frozenset({"legal"}), NOW)
    with pytest.raises(ValueError):
        Voucher("x", VoucherKind.SERVICE, 1, frozenset(), NOW)
    with pytest.raises(ValueError):
        Voucher("x", VoucherKind.SERVICE, 1, frozenset({"legal"}), NOW.replace(tzinfo=None))


def test_a_settlement_that_does_not_add_up_cannot_exist() -> None:
    with pytest.raises(ValueError):
        Settlement(
            100,
            "legal",
            0,
            buyer_paid_fen=90,
            voucher_subsidy_fen=0,
            commission_fen=0,
            payout_fen=100,
        )
    with pytest.raises(ValueError):
        Settlement(
            100,
            "legal",
            0,
            buyer_paid_fen=100,
            voucher_subsidy_fen=0,
            commission_fen=1,
            payout_fen=100,
        )


# --- refunds: examples ------------------------------------------------------------------------


def test_proportional_refund_example() -> None:
    s = settle(100_000, commission_rate_bp=800, voucher=voucher(30_000), category="legal", at=NOW)
    r = refund(s, 50_000)
    assert (r.to_buyer_fen, r.to_voucher_issuer_fen) == (35_000, 15_000)
    assert (r.commission_reversed_fen, r.payout_reversed_fen) == (4_000, 46_000)
    r2 = refund(r.after, 50_000)
    assert r2.after.buyer_refunded_fen == 70_000 and r2.after.voucher_refunded_fen == 30_000
    assert r2.after.commission_reversed_fen == 8_000 and r2.after.remaining_fen == 0


@pytest.mark.parametrize(
    ("policy", "first", "second"),
    [
        (RefundPolicy.CASH_FIRST, (50_000, 0), (20_000, 30_000)),
        (RefundPolicy.VOUCHER_FIRST, (20_000, 30_000), (50_000, 0)),
    ],
)
def test_ordered_refund_policies(
    policy: RefundPolicy, first: tuple[int, int], second: tuple[int, int]
) -> None:
    s = settle(
        100_000,
        commission_rate_bp=800,
        voucher=voucher(30_000),
        category="legal",
        at=NOW,
        refund_policy=policy,
    )
    r = refund(s, 50_000)
    assert (r.to_buyer_fen, r.to_voucher_issuer_fen) == first
    r2 = refund(r.after, 50_000)
    assert (r2.to_buyer_fen, r2.to_voucher_issuer_fen) == second


def test_refund_rounding_is_half_up_on_the_cumulative_total() -> None:
    # Commission 1 fen on 3 fen: refunds of 1 fen give back 0.33→0, 0.67→1 (cum), 1.0→1 (cum).
    s = settle(3, commission_rate_bp=3_334, voucher=None, category="legal")
    assert s.commission_fen == 1
    backs = []
    for _ in range(3):
        r = refund(s, 1)
        backs.append(r.commission_reversed_fen)
        s = r.after
    assert backs == [0, 1, 0]
    assert s.commission_remaining_fen == 0 and s.payout_remaining_fen == 0


def test_refund_refusals() -> None:
    s = settle(10_000, commission_rate_bp=800, voucher=None, category="legal")
    for bad in (0, -1):
        with pytest.raises(RefundError) as info:
            refund(s, bad)
        assert info.value.code == "refund_not_positive"
    with pytest.raises(RefundError) as info:
        refund(s, 10_001)
    assert info.value.code == "refund_exceeds_remaining"
    assert info.value.zh == "退款金额 ¥100.01 超过可退金额 ¥100.00"
    after = refund(s, 10_000).after
    with pytest.raises(RefundError) as info:
        refund(after, 1)
    assert info.value.code == "refund_exceeds_remaining"
    with pytest.raises(TypeError):
        refund(s, 1.0)


def test_nothing_to_refund_on_a_free_order() -> None:
    s = settle(0, commission_rate_bp=800, voucher=None, category="legal")
    with pytest.raises(RefundError):
        refund(s, 1)


# --- refunds: properties ----------------------------------------------------------------------

prices = st.integers(min_value=0, max_value=MAX_PRICE_FEN)
rates = st.integers(min_value=0, max_value=3_000)
policies = st.sampled_from(list(RefundPolicy))


@st.composite
def settlements(draw: st.DrawFn) -> Settlement:
    price = draw(st.one_of(st.integers(min_value=0, max_value=1_000), prices))
    rate = draw(rates)
    amount = draw(st.one_of(st.none(), st.integers(min_value=1, max_value=MAX_PRICE_FEN)))
    v = None if amount is None else voucher(amount)
    return settle(
        price,
        commission_rate_bp=rate,
        voucher=v,
        category="legal",
        at=NOW,
        refund_policy=draw(policies),
    )


@given(settlements())
def test_settle_invariants(s: Settlement) -> None:
    check_invariants(s)
    assert s.commission_fen == round_half_up_div(s.list_price_fen * s.commission_rate_bp, 10_000)
    assert s.voucher_subsidy_fen <= s.list_price_fen


@given(
    settlements(), st.lists(st.integers(min_value=1, max_value=10**9), max_size=8), st.booleans()
)
def test_refund_sequences_keep_every_invariant(
    s: Settlement, wishes: list[int], finish: bool
) -> None:
    original = s
    total = 0
    splits = []
    for wish in wishes:
        if s.remaining_fen == 0:
            break
        amount = 1 + wish % s.remaining_fen
        r = refund(s, amount)
        assert r.to_buyer_fen + r.to_voucher_issuer_fen == amount
        assert r.commission_reversed_fen + r.payout_reversed_fen == amount
        for part in (
            r.to_buyer_fen,
            r.to_voucher_issuer_fen,
            r.commission_reversed_fen,
            r.payout_reversed_fen,
        ):
            assert part >= 0
        check_invariants(r.after)
        splits.append(r)
        total += amount
        s = r.after
    # Refunds never exceed what was paid, by anyone.
    assert sum(x.to_buyer_fen for x in splits) <= original.buyer_paid_fen
    assert sum(x.to_voucher_issuer_fen for x in splits) <= original.voucher_subsidy_fen
    assert sum(x.commission_reversed_fen for x in splits) <= original.commission_fen
    assert sum(x.payout_reversed_fen for x in splits) <= original.payout_fen
    assert s.refunded_fen == total
    # Path independence: the parts end exactly where one refund of the total would.
    if total:
        assert refund(original, total).after == s
    if s.remaining_fen:
        with pytest.raises(RefundError):
            refund(s, s.remaining_fen + 1)
        if finish:
            s = refund(s, s.remaining_fen).after
    if finish or s.remaining_fen == 0:
        # Refunding everything gives every amount back exactly.
        assert s.buyer_refunded_fen == original.buyer_paid_fen
        assert s.voucher_refunded_fen == original.voucher_subsidy_fen
        assert s.commission_reversed_fen == original.commission_fen
        assert s.payout_reversed_fen == original.payout_fen
        with pytest.raises(RefundError):
            refund(s, 1)


@given(settlements(), st.integers(min_value=1, max_value=MAX_PRICE_FEN))
def test_proportional_split_tracks_the_payment_shares(s: Settlement, wish: int) -> None:
    if s.remaining_fen == 0 or s.refund_policy is not RefundPolicy.PROPORTIONAL:
        return
    amount = 1 + wish % s.remaining_fen
    r = refund(s, amount)
    # Within half a fen of the exact proportional share.
    exact2 = 2 * s.voucher_subsidy_fen * amount  # 2 × exact share × list price
    assert abs(2 * r.to_voucher_issuer_fen * s.list_price_fen - exact2) <= s.list_price_fen
    # The commission follows the money's channels (Stripe's fee refund on the cash, the rest
    # on the subsidy), each rounded half up: within one fen of the list-price share.
    exact2c = 2 * s.commission_fen * amount
    assert abs(2 * r.commission_reversed_fen * s.list_price_fen - exact2c) <= 2 * s.list_price_fen


@given(
    settlements(),
    st.lists(st.integers(min_value=1, max_value=10**9), max_size=4),
    st.booleans(),
)
def test_payout_routes_agree_with_stripe_after_any_refunds(
    s: Settlement, wishes: list[int], connect: bool
) -> None:
    """Whatever was refunded, Stripe's transfer plus what the platform forwards is the
    provider's remaining payout, and the fee still at Stripe plus the commission kept outside
    it is the remaining commission — to the fen, nothing negative (payout_routes checks)."""
    routes = payout_routes(s, connect=connect)
    if connect:  # the platform forwards the subsidy less the commission Stripe could not keep
        assert routes.forwarded_fen == s.voucher_subsidy_fen - (s.commission_fen - routes.fee_fen)
    else:  # the platform holds everything and pays the whole payout itself
        assert (routes.forwarded_fen, routes.through_stripe_fen) == (s.payout_fen, 0)
    for wish in wishes:
        if s.remaining_fen == 0:
            break
        s = refund(s, 1 + wish % s.remaining_fen).after
        routes = payout_routes(s, connect=connect)
        assert routes.through_stripe_fen + routes.forwarded_fen == s.payout_remaining_fen
        assert routes.fee_kept_fen + routes.commission_outside_fen == s.commission_remaining_fen
        # The commission given back on the cash is exactly the fee Stripe gave back.
        if connect:
            assert routes.fee_refunded_fen <= s.commission_reversed_fen
    if s.remaining_fen == 0:
        routes = payout_routes(s, connect=connect)
        assert routes.through_stripe_fen == routes.forwarded_fen == routes.fee_kept_fen == 0


def pct(code: str, percent_bp: int, cap_fen: int, days: int = 30) -> Voucher:
    return Voucher(
        code,
        VoucherKind.INNOVATION,
        cap_fen,
        frozenset({"legal"}),
        NOW + timedelta(days=days),
        percent_bp=percent_bp,
    )


def fixed(code: str, amount_fen: int, days: int = 30) -> Voucher:
    return Voucher(
        code, VoucherKind.SERVICE, amount_fen, frozenset({"legal"}), NOW + timedelta(days=days)
    )


@pytest.mark.parametrize(
    ("price", "vouchers", "paid"),
    [
        # 50 % of ¥1,000.01 rounds half up to ¥500.01 (under the ¥800 cap).
        (100_001, [pct("P", 5_000, 80_000)], [("P", 50_001)]),
        # The cap bites: 50 % of ¥2,000 is ¥1,000, capped at ¥800.
        (200_000, [pct("P", 5_000, 80_000)], [("P", 80_000)]),
        # Stacking: the voucher lapsing first goes first; each pays at most what is unpaid.
        (
            100_000,
            [fixed("F", 30_000, days=60), pct("P", 8_000, 90_000)],
            [("P", 80_000), ("F", 20_000)],
        ),
        # Same expiry: the one worth more on this order first.
        (100_000, [fixed("A", 10_000), fixed("B", 30_000)], [("B", 30_000), ("A", 10_000)]),
        # Two 30 % vouchers on an odd price: 33.33→33.33 each (half up on 3,333.3).
        (11_111, [pct("X", 3_000, 99_999), pct("Y", 3_000, 99_999)], [("X", 3_333), ("Y", 3_333)]),
    ],
)
def test_voucher_values_and_stacking_order(price, vouchers, paid) -> None:
    applied = apply_vouchers(price, vouchers, category="legal", at=NOW)
    assert [(v.code, pays) for v, pays in applied] == paid
    s = settle(
        price, commission_rate_bp=500, voucher=None, vouchers=vouchers, category="legal", at=NOW
    )
    assert s.voucher_subsidy_fen == sum(p for _, p in paid) <= price
    assert s.buyer_paid_fen + s.voucher_subsidy_fen == price


def test_a_voucher_that_would_pay_nothing_is_refused_and_bad_percentages_are_bugs() -> None:
    with pytest.raises(VoucherError) as needless:
        apply_vouchers(
            10_000, [fixed("A", 10_000), fixed("B", 500, days=60)], category="legal", at=NOW
        )
    assert needless.value.code == "voucher_not_needed" and "B" in needless.value.zh
    with pytest.raises(ValueError):
        pct("P", 10_001, 100)
    with pytest.raises(TypeError):
        pct("P", 50.0, 100)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("price", "rate", "vouchers", "refunds"),
    [
        (100_001, 500, [], [40_000]),
        (100_001, 500, [pct("P", 5_000, 80_000)], [33_333, 1]),
        (8_888, 500, [fixed("F", 8_800)], [1_001]),  # cash ¥0.88 below the ¥4.44 commission
        (77_777, 3_000, [pct("P", 3_333, 99_999), fixed("F", 10_000)], [7, 12_345, 3]),
        (3, 3_334, [], [1, 1, 1]),
    ],
)
def test_stacked_and_percentage_vouchers_with_partial_refunds_add_up(
    price, rate, vouchers, refunds
) -> None:
    s = settle(
        price, commission_rate_bp=rate, voucher=None, vouchers=vouchers, category="legal", at=NOW
    )
    for amount in [*refunds, None]:
        amount = s.remaining_fen if amount is None else amount
        if amount == 0:
            break
        r = refund(s, amount)
        s = r.after
        check_invariants(s)
        for connect in (True, False):
            routes = payout_routes(s, connect=connect)
            assert routes.through_stripe_fen + routes.forwarded_fen == s.payout_remaining_fen
        assert stripe_fee(s) == min(s.commission_fen, s.buyer_paid_fen)
    assert s.buyer_refunded_fen == s.buyer_paid_fen and s.commission_remaining_fen == 0
