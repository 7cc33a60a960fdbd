"""The one place a channel is chosen by name."""

from __future__ import annotations

from lifecycle.channels.base import Channel
from lifecycle.channels.email import EmailChannel
from lifecycle.channels.portal import PortalChannel

CHANNELS: dict[str, Channel] = {"portal": PortalChannel(), "email": EmailChannel()}
