"""The session's Stripe (tests/stripe_fixtures.py: localstripe behind the stand-in, the gateway
pointed at them, an app that uses it) for paid datasets."""

import pytest
from litestar import Litestar


@pytest.fixture(scope="session")
def app(stripe_app: Litestar) -> Litestar:
    return stripe_app


@pytest.fixture(autouse=True)
def _stripe_for_this_test(stripe_on):
    """Payments go to Stripe during these tests only (tests/stripe_fixtures.stripe_on)."""
    return stripe_on
