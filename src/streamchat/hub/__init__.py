"""The stream hub: each stream's events, kept for replay, and the followers that wait on them.

The Redis hub is `streamchat.hub.redis.RedisHub`, imported only where several nodes are
configured: redis-py adds about 20 MB to a process that never needs it.
"""

from .base import Batch, Hooks, HubUnavailable, StreamHub, StreamNotFound, Subscription
from .memory import MemoryHub

__all__ = [
    "Batch",
    "Hooks",
    "HubUnavailable",
    "MemoryHub",
    "StreamHub",
    "StreamNotFound",
    "Subscription",
]
