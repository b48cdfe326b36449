"""streamchat: a streaming AI chat server."""

__version__ = "0.1.0"
