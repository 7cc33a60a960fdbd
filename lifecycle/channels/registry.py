"""The one place a channel is chosen by name: one line per channel (its folder holds the rest).

The order is the order of the fan-out, the plan preview and the reports' columns. Email and the
portal need no subscription (every customer has them); the others go to the customer's subscriptions.
"""

from __future__ import annotations

from lifecycle.channels.base import Channel, SubscribedChannel
from lifecycle.channels.email import EmailChannel
from lifecycle.channels.portal import PortalChannel
from lifecycle.channels.slack import SlackChannel
from lifecycle.channels.teams import TeamsChannel
from lifecycle.channels.webhook import WebhookChannel

CHANNELS: dict[str, Channel] = {
    "portal": PortalChannel(),
    "email": EmailChannel(),
    "webhook": WebhookChannel(),
    "slack": SlackChannel(),
    "teams": TeamsChannel(),
}

# The channel that reaches the vendor's own people (account reps, the operator) by address: alerts
# about deliveries given up go through it.
STAFF_CHANNEL = "email"


def subscribable() -> dict[str, SubscribedChannel]:
    """The channels a customer can subscribe to."""
    return {name: ch for name, ch in CHANNELS.items() if ch.subscribed and isinstance(ch, SubscribedChannel)}
