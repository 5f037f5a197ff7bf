"""Money for the marketplace: prices, checkout settlement and partial refunds, in fen.

Every amount is an ``int`` number of fen (分, 1/100 yuan); floats never appear. Rounding is
round half up to the fen (四舍五入), done in integer arithmetic. The rules and the reasons are
in ``docs/marketplace-core.md``.

Invariants of a :class:`Settlement` (checked on construction, so a wrong one cannot exist)::

    buyer_paid + voucher_subsidy == list_price == payout + commission

and, after any sequence of partial refunds, the same equations hold for what remains.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from canal.platform.http.errors import CanalError, FieldError

FEN_PER_YUAN = 100
BP_DENOMINATOR = 10_000  # basis points: 10000 bp == 100 %
MAX_PRICE_FEN = 10_000_000 * FEN_PER_YUAN  # ¥10,000,000.00 is the largest accepted price
MAX_COMMISSION_BP = BP_DENOMINATOR

# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class PriceError(CanalError):
    """A price a person typed cannot be used; ``code`` says why, ``zh``/``en`` tell them."""

    def field_error(self, field: str) -> FieldError:
        """The same refusal as a form field error, for ``invalid([...])``."""
        return FieldError(field, self.code, self.zh, self.en)


class VoucherError(CanalError):
    """A voucher cannot pay for this order (expired, or not for this category)."""


class RefundError(CanalError):
    """A refund cannot be made (not positive, or more than what remains)."""


def _price_error(code: str, zh: str, en: str) -> PriceError:
    return PriceError(code, zh, en, status=422)


# ---------------------------------------------------------------------------------------------
# Rounding
# ---------------------------------------------------------------------------------------------


def round_half_up_div(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half up to an integer (四舍五入), for numerator >= 0.

    Pure integer arithmetic: ``floor((2n + d) / 2d)``.
    """
    if numerator < 0 or denominator <= 0:
        raise ValueError("round_half_up_div takes a non-negative numerator, positive denominator")
    return (2 * numerator + denominator) // (2 * denominator)


def commission_for(list_price_fen: int, commission_rate_bp: int) -> int:
    """Platform commission on a list price: ``price × rate / 10000``, rounded half up to the fen."""
    _check_fen(list_price_fen, "list_price_fen")
    _check_rate(commission_rate_bp)
    return round_half_up_div(list_price_fen * commission_rate_bp, BP_DENOMINATOR)


# ---------------------------------------------------------------------------------------------
# Parsing and formatting
# ---------------------------------------------------------------------------------------------

_CURRENCY_SIGNS = ("¥", "￥")  # half-width U+00A5 and full-width U+FFE5
_MINUS_SIGNS = ("-", "−", "－")  # ASCII, U+2212, full-width
# Either plain digits or correctly grouped thousands, then an optional fraction.
_PRICE_RE = re.compile(r"(?P<int>[0-9]+|[0-9]{1,3}(?:,[0-9]{3})+)(?:\.(?P<frac>[0-9]+))?", re.ASCII)
_MAX_INT_DIGITS = len(str(MAX_PRICE_FEN // FEN_PER_YUAN))


def parse_price(text: str) -> int:
    """A price typed by a person → fen.

    Accepts ``1234``, ``1234.5``, ``1,234.56``, ``¥1234.56`` (also full-width ``￥``, and spaces
    around the number). Refuses, each with its own code and message: empty, negative, non-ASCII
    digits (full-width ``１２３``, Arabic-Indic …), more than two decimals, more than
    ¥10,000,000, and anything else that is not a plain amount (``1e5``, ``1,23``, ``.5``).
    Zero is accepted: whether a listing may be free is a listing rule, not a money rule.
    """
    s = text.strip()
    for sign in _CURRENCY_SIGNS:
        if s.startswith(sign):
            s = s[len(sign) :].strip()
            break
    if not s:
        raise _price_error("price_empty", "请填写价格", "Please enter a price")
    if any(ch.isdigit() and not ch.isascii() for ch in s):
        raise _price_error(
            "price_non_ascii_digits",
            "价格请使用半角数字 0-9",
            "Prices use the digits 0-9 only",
        )
    if s.startswith(_MINUS_SIGNS):
        raise _price_error("price_negative", "价格不能为负数", "Prices cannot be negative")
    m = _PRICE_RE.fullmatch(s)
    if m is None:
        raise _price_error(
            "price_malformed",
            "价格格式不正确,例如:1234.56",
            "That is not a price; for example: 1234.56",
        )
    frac = m.group("frac") or ""
    if len(frac) > 2:
        raise _price_error(
            "price_too_many_decimals",
            "价格最多保留两位小数",
            "Prices have at most two decimals",
        )
    int_digits = m.group("int").replace(",", "").lstrip("0") or "0"
    too_large = _price_error(
        "price_too_large",
        "价格不能超过 ¥10,000,000.00",
        "Prices cannot exceed ¥10,000,000.00",
    )
    if len(int_digits) > _MAX_INT_DIGITS:  # refuse before int() of a huge string
        raise too_large
    fen = int(int_digits) * FEN_PER_YUAN + int(frac.ljust(2, "0"))
    if fen > MAX_PRICE_FEN:
        raise too_large
    return fen


def format_cny(fen: int) -> str:
    """Fen → ``¥1,234.56``; a negative amount (a reversal) is ``-¥1,234.56``."""
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise TypeError("amounts are int fen")
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(fen), FEN_PER_YUAN)
    return f"{sign}¥{yuan:,}.{cents:02d}"


# ---------------------------------------------------------------------------------------------
# Vouchers
# ---------------------------------------------------------------------------------------------


class VoucherKind(StrEnum):
    SERVICE = "service"  # 服务券
    INNOVATION = "innovation"  # 创新券


VOUCHER_KIND_LABELS: dict[VoucherKind, tuple[str, str]] = {
    VoucherKind.SERVICE: ("服务券", "service voucher"),
    VoucherKind.INNOVATION: ("创新券", "innovation voucher"),
}


@dataclass(frozen=True, slots=True)
class Voucher:
    """A voucher (服务券 / 创新券) that pays up to ``amount_fen`` of an order's price — or, with
    ``percent_bp`` > 0, that share of the list price (rounded half up) capped at ``amount_fen``.

    The issuer (e.g. the district's science and technology bureau) pays that part to the
    provider. ``expires_at`` is an aware datetime; the voucher is usable strictly before it
    (a voucher "valid through 2026-12-31" in China is ``2027-01-01T00:00+08:00``).
    """

    code: str
    kind: VoucherKind
    amount_fen: int
    eligible_categories: frozenset[str]
    expires_at: datetime
    percent_bp: int = 0  # 0: a fixed amount; 5000: 50 % of the list price, up to amount_fen

    def __post_init__(self) -> None:
        _check_fen(self.amount_fen, "amount_fen")
        if self.amount_fen == 0:
            raise ValueError("a voucher is worth at least one fen")
        if isinstance(self.percent_bp, bool) or not isinstance(self.percent_bp, int):
            raise TypeError("percent_bp must be int basis points")
        if not 0 <= self.percent_bp <= BP_DENOMINATOR:
            raise ValueError("percent_bp must be between 0 and 10000")
        if not self.eligible_categories:
            raise ValueError("a voucher names at least one eligible category")
        if self.expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")


def check_voucher(voucher: Voucher, *, category: str, at: datetime) -> None:
    """Raise :class:`VoucherError` if ``voucher`` cannot pay for a ``category`` order at ``at``."""
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    kind_zh, kind_en = VOUCHER_KIND_LABELS[voucher.kind]
    if at >= voucher.expires_at:
        when = voucher.expires_at.strftime("%Y-%m-%d %H:%M")
        raise VoucherError(
            "voucher_expired",
            f"该{kind_zh}已于 {when} 过期,不能使用",
            f"This {kind_en} expired at {when} and can no longer be used",
            status=409,
        )
    if category not in voucher.eligible_categories:
        raise VoucherError(
            "voucher_not_eligible",
            f"该{kind_zh}不适用于此类服务",
            f"This {kind_en} cannot be used for this kind of service",
            status=409,
        )


def voucher_value(voucher: Voucher, list_price_fen: int) -> int:
    """What ``voucher`` is worth on an order of ``list_price_fen`` on its own: its amount, or
    its percentage of the list price rounded half up and capped at its amount."""
    if voucher.percent_bp:
        share = round_half_up_div(list_price_fen * voucher.percent_bp, BP_DENOMINATOR)
        return min(share, voucher.amount_fen)
    return voucher.amount_fen


def stacking_order(vouchers: Sequence[Voucher], list_price_fen: int) -> list[Voucher]:
    """The order in which several vouchers on one order are applied: the one that lapses
    first, then the one worth more on this order, then by code (so the order is total)."""
    return sorted(vouchers, key=lambda v: (v.expires_at, -voucher_value(v, list_price_fen), v.code))


def apply_vouchers(
    list_price_fen: int, vouchers: Sequence[Voucher], *, category: str, at: datetime
) -> list[tuple[Voucher, int]]:
    """Each voucher with the amount it pays, in stacking order. Every voucher is checked
    (expiry, category); each pays its value but at most what is still unpaid, so the total
    subsidy never exceeds the list price. A voucher that would pay nothing (the others already
    cover the price) is refused with ``voucher_not_needed``: using it would burn it for nothing.
    """
    if len({v.code for v in vouchers}) != len(vouchers):
        raise ValueError("the same voucher twice")
    applied: list[tuple[Voucher, int]] = []
    unpaid = list_price_fen
    for voucher in stacking_order(vouchers, list_price_fen):
        check_voucher(voucher, category=category, at=at)
        pays = min(voucher_value(voucher, list_price_fen), unpaid)
        if pays == 0 and applied:
            kind_zh, kind_en = VOUCHER_KIND_LABELS[voucher.kind]
            raise VoucherError(
                "voucher_not_needed",
                f"其他券已抵扣全部金额,无需再使用这张{kind_zh}({voucher.code})",
                f"The other vouchers already cover the price; this {kind_en} "
                f"({voucher.code}) is not needed",
                status=409,
            )
        applied.append((voucher, pays))
        unpaid -= pays
    return applied


# ---------------------------------------------------------------------------------------------
# Settlement and refunds
# ---------------------------------------------------------------------------------------------


class RefundPolicy(StrEnum):
    """How a partial refund is split between the buyer's cash and the voucher subsidy.

    Fixed when the order is settled (it is part of the voucher programme's rules), so every
    refund of one order follows the same rule.
    """

    PROPORTIONAL = "proportional"  # default: same cash/voucher shares as the payment
    CASH_FIRST = "cash_first"  # buyer's cash back first, subsidy returned last
    VOUCHER_FIRST = "voucher_first"  # subsidy returned to the issuer first


@dataclass(frozen=True, slots=True)
class Settlement:
    """Who pays and who receives what for one order, and how much has been refunded so far.

    ``buyer_paid_fen + voucher_subsidy_fen == list_price_fen == payout_fen + commission_fen``.
    The ``*_refunded_fen`` / ``*_reversed_fen`` fields are cumulative over all refunds; the
    ``*_remaining_fen`` properties are what is left after them.
    """

    list_price_fen: int
    category: str
    commission_rate_bp: int
    buyer_paid_fen: int
    voucher_subsidy_fen: int
    commission_fen: int
    payout_fen: int
    voucher_code: str | None = None
    refund_policy: RefundPolicy = RefundPolicy.PROPORTIONAL
    refunded_fen: int = 0
    buyer_refunded_fen: int = 0
    voucher_refunded_fen: int = 0
    commission_reversed_fen: int = 0
    payout_reversed_fen: int = 0

    def __post_init__(self) -> None:
        for name in (
            "list_price_fen",
            "buyer_paid_fen",
            "voucher_subsidy_fen",
            "commission_fen",
            "payout_fen",
            "refunded_fen",
            "buyer_refunded_fen",
            "voucher_refunded_fen",
            "commission_reversed_fen",
            "payout_reversed_fen",
        ):
            _check_fen(getattr(self, name), name)
        p = self.list_price_fen
        if self.buyer_paid_fen + self.voucher_subsidy_fen != p:
            raise ValueError("buyer_paid + voucher_subsidy must equal list_price")
        if self.payout_fen + self.commission_fen != p:
            raise ValueError("payout + commission must equal list_price")
        if self.buyer_refunded_fen + self.voucher_refunded_fen != self.refunded_fen:
            raise ValueError("buyer and voucher refunds must add up to the refund")
        if self.commission_reversed_fen + self.payout_reversed_fen != self.refunded_fen:
            raise ValueError("commission and payout reversals must add up to the refund")
        if (
            self.refunded_fen > p
            or self.buyer_refunded_fen > self.buyer_paid_fen
            or self.voucher_refunded_fen > self.voucher_subsidy_fen
            or self.commission_reversed_fen > self.commission_fen
            or self.payout_reversed_fen > self.payout_fen
        ):
            raise ValueError("a refund cannot exceed what was paid")

    @property
    def remaining_fen(self) -> int:
        """How much of the price has not been refunded (the most a further refund can be)."""
        return self.list_price_fen - self.refunded_fen

    @property
    def buyer_paid_remaining_fen(self) -> int:
        return self.buyer_paid_fen - self.buyer_refunded_fen

    @property
    def voucher_subsidy_remaining_fen(self) -> int:
        return self.voucher_subsidy_fen - self.voucher_refunded_fen

    @property
    def commission_remaining_fen(self) -> int:
        return self.commission_fen - self.commission_reversed_fen

    @property
    def payout_remaining_fen(self) -> int:
        return self.payout_fen - self.payout_reversed_fen


@dataclass(frozen=True, slots=True)
class RefundSplit:
    """One refund: where the money goes back to, what it takes back, and the settlement after.

    ``to_buyer_fen + to_voucher_issuer_fen == refund_fen
    == commission_reversed_fen + payout_reversed_fen``.
    """

    refund_fen: int
    to_buyer_fen: int
    to_voucher_issuer_fen: int
    commission_reversed_fen: int
    payout_reversed_fen: int
    after: Settlement


def settle(
    list_price_fen: int,
    *,
    commission_rate_bp: int,
    voucher: Voucher | None,
    category: str,
    at: datetime | None = None,
    refund_policy: RefundPolicy = RefundPolicy.PROPORTIONAL,
    vouchers: Sequence[Voucher] = (),
) -> Settlement:
    """The checkout split of one order.

    - ``commission_rate_bp``: the operator's rate for ``category`` (0–10000 bp), applied to the
      full list price — a voucher does not lower the platform's commission.
    - ``voucher`` / ``vouchers``: applied by :func:`apply_vouchers` (stacking order, each
      capped by what is still unpaid); refused with :class:`VoucherError` when expired at
      ``at`` (required with a voucher), not valid for ``category`` or not needed. The buyer
      pays the rest.
    - payout to the provider = list price − commission (of which the voucher issuer pays the
      subsidy part, the buyer the rest).
    """
    _check_fen(list_price_fen, "list_price_fen")
    if list_price_fen > MAX_PRICE_FEN:
        raise ValueError("list price above the maximum")
    _check_rate(commission_rate_bp)
    subsidy = 0
    code = None
    every = [*([voucher] if voucher is not None else []), *vouchers]
    if every:
        if at is None:
            raise ValueError("settling with a voucher needs the time `at`")
        applied = apply_vouchers(list_price_fen, every, category=category, at=at)
        subsidy = sum(pays for _, pays in applied)
        code = ",".join(v.code for v, _ in applied)
    commission = commission_for(list_price_fen, commission_rate_bp)
    return Settlement(
        list_price_fen=list_price_fen,
        category=category,
        commission_rate_bp=commission_rate_bp,
        buyer_paid_fen=list_price_fen - subsidy,
        voucher_subsidy_fen=subsidy,
        commission_fen=commission,
        payout_fen=list_price_fen - commission,
        voucher_code=code,
        refund_policy=refund_policy,
    )


def _voucher_share(s: Settlement, total_refunded: int) -> int:
    """Cumulative part of ``total_refunded`` that goes back to the voucher issuer.

    A function of the total only, so a refund in several parts ends exactly where one refund
    of the same total would, and a full refund returns exactly the whole subsidy.
    """
    if s.refund_policy is RefundPolicy.PROPORTIONAL:
        if s.list_price_fen == 0:
            return 0
        return round_half_up_div(s.voucher_subsidy_fen * total_refunded, s.list_price_fen)
    if s.refund_policy is RefundPolicy.CASH_FIRST:
        return max(0, total_refunded - s.buyer_paid_fen)
    return min(total_refunded, s.voucher_subsidy_fen)  # VOUCHER_FIRST


def stripe_fee(s: Settlement) -> int:
    """The application fee a destination charge carries: the commission, capped at the
    buyer's cash (Stripe refuses a fee above the charge; the rest of the commission is kept
    from the voucher subsidy the platform forwards)."""
    return min(s.commission_fen, s.buyer_paid_fen)


def stripe_fee_refund(fee_fen: int, charge_fen: int, cash_refunded_fen: int) -> int:
    """Cumulative application fee Stripe gives back (``refund_application_fee``) once
    ``cash_refunded_fen`` of a ``charge_fen`` charge is refunded: in proportion, rounded half
    up to the fen; the whole fee once the whole charge is refunded."""
    if charge_fen == 0:
        return 0
    return round_half_up_div(fee_fen * cash_refunded_fen, charge_fen)


def _commission_share(s: Settlement, cash_total: int, voucher_total: int) -> int:
    """Cumulative commission given back, channel by channel so the books agree with Stripe's
    to the fen: on the cash, the application fee as Stripe refunds it; on the subsidy, the
    commission kept outside Stripe (commission − fee) in proportion to the subsidy refunded."""
    fee = stripe_fee(s)
    back = stripe_fee_refund(fee, s.buyer_paid_fen, cash_total)
    outside = s.commission_fen - fee
    if outside and s.voucher_subsidy_fen:
        back += round_half_up_div(outside * voucher_total, s.voucher_subsidy_fen)
    return back


@dataclass(frozen=True, slots=True)
class PayoutRoutes:
    """How the remaining payout and commission of an order travel, to the fen.

    ``through_stripe_fen`` reaches the provider by the destination charge's transfer (after
    Stripe's reversals and fee refunds); ``forwarded_fen`` is what the platform pays the
    provider itself (the voucher subsidy it holds — and, without Connect, the buyer's cash —
    less the commission kept outside Stripe). ``fee_kept_fen`` is the application fee still
    at Stripe, ``commission_outside_fen`` the rest of the commission.
    """

    connect: bool
    fee_fen: int
    fee_refunded_fen: int
    through_stripe_fen: int
    forwarded_fen: int
    fee_kept_fen: int
    commission_outside_fen: int


def payout_routes(s: Settlement, *, connect: bool) -> PayoutRoutes:
    """The remaining payout split between Stripe's transfer and the platform's own payment.

    Invariants (checked): ``through_stripe + forwarded == payout_remaining``,
    ``fee_kept + commission_outside == commission_remaining``, every part ≥ 0, and what the
    platform holds (subsidy, plus the cash without Connect) is exactly forwarded + commission
    outside."""
    fee = stripe_fee(s) if connect else 0
    fee_refunded = stripe_fee_refund(fee, s.buyer_paid_fen, s.buyer_refunded_fen)
    cash_left = s.buyer_paid_remaining_fen
    fee_kept = fee - fee_refunded
    through = cash_left - fee_kept if connect else 0
    forwarded = s.payout_remaining_fen - through
    outside = s.commission_remaining_fen - fee_kept
    held = s.voucher_subsidy_remaining_fen + (0 if connect else cash_left)
    if min(through, forwarded, fee_kept, outside) < 0 or forwarded + outside != held:
        raise ValueError("payout routes do not add up")  # a bug in the rules, never input
    return PayoutRoutes(connect, fee, fee_refunded, through, forwarded, fee_kept, outside)


def refund(settlement: Settlement, refund_fen: int) -> RefundSplit:
    """Refund ``refund_fen`` of an order (full or partial; may be called again for the rest).

    The refund goes back to the buyer and to the voucher issuer according to the settlement's
    :class:`RefundPolicy`; the commission and the provider's payout shrink in proportion to the
    refunded part of the list price, rounded half up. Both splits are computed on the
    cumulative refunded total (then differenced), so rounding never drifts across partial
    refunds and refunding everything returns every amount exactly.
    """
    if isinstance(refund_fen, bool) or not isinstance(refund_fen, int):
        raise TypeError("amounts are int fen")
    if refund_fen <= 0:
        raise RefundError(
            "refund_not_positive",
            "退款金额必须大于零",
            "A refund must be more than zero",
            status=422,
        )
    s = settlement
    if refund_fen > s.remaining_fen:
        raise RefundError(
            "refund_exceeds_remaining",
            f"退款金额 {format_cny(refund_fen)} 超过可退金额 {format_cny(s.remaining_fen)}",
            f"A refund of {format_cny(refund_fen)} is more than the "
            f"{format_cny(s.remaining_fen)} that can still be refunded",
            status=422,
        )
    total = s.refunded_fen + refund_fen
    voucher_total = _voucher_share(s, total)
    commission_total = _commission_share(s, total - voucher_total, voucher_total)
    to_issuer = voucher_total - s.voucher_refunded_fen
    commission_back = commission_total - s.commission_reversed_fen
    after = Settlement(
        list_price_fen=s.list_price_fen,
        category=s.category,
        commission_rate_bp=s.commission_rate_bp,
        buyer_paid_fen=s.buyer_paid_fen,
        voucher_subsidy_fen=s.voucher_subsidy_fen,
        commission_fen=s.commission_fen,
        payout_fen=s.payout_fen,
        voucher_code=s.voucher_code,
        refund_policy=s.refund_policy,
        refunded_fen=total,
        buyer_refunded_fen=total - voucher_total,
        voucher_refunded_fen=voucher_total,
        commission_reversed_fen=commission_total,
        payout_reversed_fen=total - commission_total,
    )  # __post_init__ re-checks every invariant
    return RefundSplit(
        refund_fen=refund_fen,
        to_buyer_fen=refund_fen - to_issuer,
        to_voucher_issuer_fen=to_issuer,
        commission_reversed_fen=commission_back,
        payout_reversed_fen=refund_fen - commission_back,
        after=after,
    )


# ---------------------------------------------------------------------------------------------
# Checks on programmer-supplied values (not people's input: those go through parse_price)
# ---------------------------------------------------------------------------------------------


def _check_fen(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be int fen, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} cannot be negative")


def _check_rate(commission_rate_bp: object) -> None:
    if isinstance(commission_rate_bp, bool) or not isinstance(commission_rate_bp, int):
        raise TypeError("commission_rate_bp must be int basis points")
    if not 0 <= commission_rate_bp <= MAX_COMMISSION_BP:
        raise ValueError("commission_rate_bp must be between 0 and 10000")
