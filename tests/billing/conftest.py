"""Billing's tests use the session's Stripe (tests/stripe_fixtures.py: localstripe, the
stand-in and the gateway, on during each test). Helpers: tests/billing/helpers.py."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _stripe_for_this_test(stripe_on):
    """Payments go to Stripe during these tests only (tests/stripe_fixtures.stripe_on)."""
    return stripe_on
