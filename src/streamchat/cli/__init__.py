"""The `streamchat` command: serve, keys, chat."""

from .main import main

__all__ = ["main"]
