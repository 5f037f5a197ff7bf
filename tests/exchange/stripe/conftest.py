"""The billing tests' Stripe fixtures (localstripe behind the stand-in, the gateway pointed at
them, an app that uses it) for paid datasets."""

from tests.billing.conftest import app, gateway, localstripe_url, standin  # noqa: F401
