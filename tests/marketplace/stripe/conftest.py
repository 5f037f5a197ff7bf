"""The session's Stripe (tests/stripe_fixtures.py: localstripe behind the stand-in, the gateway
pointed at them) for the supermarket's money tests."""

import pytest


@pytest.fixture(autouse=True)
def _stripe_for_this_test(stripe_on):
    """Payments go to Stripe during these tests only (tests/stripe_fixtures.stripe_on)."""
    return stripe_on
