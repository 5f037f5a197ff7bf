"""Billing: Stripe subscriptions for paid module plans, one-off payments, Connect payouts and
usage metering, all through one gateway (``gateway.py``)."""
