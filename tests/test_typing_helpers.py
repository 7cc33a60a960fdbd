"""The small helpers the type check brought in: `pk()` (the id of a row in the database, typed `int`),
`table_of()` (a model's Core table) and `subscribable()` (typed to the subscribed channels)."""

import datetime as dt

import pytest
import sqlalchemy as sa

from lifecycle.channels.base import SubscribedChannel
from lifecycle.channels.registry import CHANNELS, subscribable
from lifecycle.db import session_scope
from lifecycle.models import Delivery, Notice, Product, pk, table_of


def test_pk_is_the_id_of_a_flushed_row_and_refuses_one_never_flushed(sqlite_db):
    with session_scope() as s:
        product = Product(slug="acp", name="ACP", created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        with pytest.raises(ValueError, match="Product has no id yet"):
            pk(product)
        s.add(product)
        s.flush()
        assert product.id is not None
        assert pk(product) == product.id


def test_table_of_is_the_models_core_table():
    for model, name in ((Delivery, "delivery"), (Notice, "notice")):
        table = table_of(model)
        assert isinstance(table, sa.Table)
        assert table.name == name
        assert "id" in table.c


def test_subscribable_channels_are_exactly_the_subscribed_ones():
    subscribed = {name for name, ch in CHANNELS.items() if ch.subscribed}
    assert subscribed  # webhook, Slack, Teams
    assert set(subscribable()) == subscribed
    assert all(isinstance(ch, SubscribedChannel) and ch.title for ch in subscribable().values())
    assert not {"email", "portal"} & set(subscribable())
