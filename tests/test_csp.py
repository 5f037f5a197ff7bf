"""The content security policy lets a form post be redirected to Stripe's hosted pages (browsers
apply form-action to the redirect after the post) and nowhere else outside the portal."""

from __future__ import annotations

import pytest

from canal.platform.http.middleware import STRIPE_HOSTED_PAGES


def _form_action(header: str) -> list[str]:
    for directive in header.split(";"):
        name, *sources = directive.split()
        if name == "form-action":
            return sources
    raise AssertionError(f"no form-action in {header!r}")


@pytest.mark.parametrize(
    "url, allowed",
    [
        ("https://checkout.stripe.com/c/pay/cs_test_a1", True),  # Checkout (pay, subscribe)
        ("https://billing.stripe.com/p/session/test_b2", True),  # the billing portal
        ("https://connect.stripe.com/setup/e/acct_1/c3", True),  # payout onboarding
        ("https://s3.example.cn/bucket/key", False),  # downloads are links, not redirects
    ],
)
async def test_form_posts_may_lead_to_stripe_hosted_pages_only(client, url, allowed):
    page = await client.get("/login")
    sources = _form_action(page.headers["content-security-policy"])
    # Nothing else: no wildcard, no scheme source such as https:.
    assert set(sources) == {"'self'", *STRIPE_HOSTED_PAGES}
    origin = "/".join(url.split("/")[:3])
    assert (origin in sources) is allowed
