"""Data bank fixtures: an organisation with its owner signed in, and a verified resident.
Helpers: tests/exchange/bank/helpers.py."""

from __future__ import annotations

import pytest

from tests.exchange.bank.helpers import Org, make_org, make_resident
from tests.factories import Person, sign_in


@pytest.fixture
async def org(app) -> Org:
    return await make_org()


@pytest.fixture
async def owner_client(client, org):
    await sign_in(client, org.owner)
    return client


@pytest.fixture
async def resident(app) -> Person:
    return await make_resident()
