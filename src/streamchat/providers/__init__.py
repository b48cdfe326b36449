"""Providers: where answers come from."""

from __future__ import annotations

from ..config import Settings
from ..metrics import Metrics
from .base import Provider
from .echo import EchoProvider
from .openai import OpenAIProvider


def build_provider(settings: Settings, metrics: Metrics | None = None) -> Provider:
    """The provider `STREAMCHAT_PROVIDER` names (the local one reports its queue to `metrics`)."""
    if settings.provider == "local":
        # Imported here: a server on another provider never loads the embedded model's code.
        from .local import LocalProvider

        return LocalProvider(settings, metrics)
    if settings.provider == "openai":
        return OpenAIProvider(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key,
            model=settings.model_name,
            connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_read_timeout,
            max_connections=settings.upstream_max_connections,
        )
    return EchoProvider(settings.model_name, settings.echo_delay_ms)
