"""Organisations (tenants), memberships, invitations, roles and module subscriptions."""
