"""API keys: made here, shown once, kept only as their SHA-256.

A key is `sc-` and 32 random bytes, URL-safe base64 (43 characters): full entropy, so a
fast hash is the right one (a slow, salted hash protects guessable passwords, and would
cost every request). The display prefix is the key's first 11 characters (`sc-` and 8 of
the random part): enough to tell keys apart in a list and a log, far too little to use.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "sc-"
_RANDOM_BYTES = 32
DISPLAY_CHARS = len(KEY_PREFIX) + 8


def new_key() -> str:
    """A new key, to be shown once."""
    return KEY_PREFIX + secrets.token_urlsafe(_RANDOM_BYTES)


def key_hash(key: str) -> str:
    """What the store keeps of a key: its SHA-256, hex."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def display_prefix(key: str) -> str:
    """The part of a key that may be shown (lists, logs)."""
    return key[:DISPLAY_CHARS]


def looks_like_a_key(key: str) -> bool:
    """Whether `key` could be one of ours (saves a lookup for what cannot be)."""
    return key.startswith(KEY_PREFIX) and 20 <= len(key) <= 200
