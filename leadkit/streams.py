"""Streams: the groups of clients a batch runs under one lease, and which clients a batch may harvest.

Both the batch (which takes a stream's lease and dispatches clients) and the alert rules (which look for a silent
stream or a silent client) need these; they live below both."""

from __future__ import annotations

from leadkit.models import Client


def lease_name(stream: int) -> str:
    """The name of the lease that one batch of `stream` holds at a time."""
    return f"batch-stream-{stream}"


def may_harvest(client: Client) -> bool:
    """Post harvesting is possible for this client (whether it is due today is the notebook's decision)."""
    return client.active and client.service_level >= 2 and client.post_access
