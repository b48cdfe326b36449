"""The stream hub: each stream's events, kept for replay, and the followers that wait on them."""

from .base import Batch, Hooks, HubUnavailable, StreamHub, StreamNotFound, Subscription
from .memory import MemoryHub
from .redis import RedisHub

__all__ = [
    "Batch",
    "Hooks",
    "HubUnavailable",
    "MemoryHub",
    "RedisHub",
    "StreamHub",
    "StreamNotFound",
    "Subscription",
]
