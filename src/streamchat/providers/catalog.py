"""The models file (`STREAMCHAT_MODELS_FILE`, DESIGN §10): the entries a server answers to.

Read and checked once at start-up: a bad file is one `CatalogError` that names the entry and
the field, so the server stops with one line instead of failing on the first request. An
entry's key is read from the variable its `api_key_env` names, never from the file, and never
appears in a message. Without the file, the single-provider settings make the one entry.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..config import Settings

# A name is what clients send as `model`: printable, no spaces, short.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$"


class CatalogError(Exception):
    """The models file cannot be used; the message says which entry and field, and why."""


class ModelEntry(BaseModel):
    """One model clients may name: where it is served and what to try when it refuses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, description="The id clients send and /v1/models lists")
    provider: Literal["local", "openai", "echo"]
    model_path: Path | None = Field(None, description="local only: a GGUF file")
    base_url: str | None = Field(None, description="openai only: the upstream's /v1 URL")
    api_key_env: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="the variable holding the key"
    )
    upstream_model: str | None = Field(None, min_length=1, description="the id sent upstream")
    fallbacks: tuple[str, ...] = Field((), description="tried in order after a refusal")

    @model_validator(mode="after")
    def _fits_its_provider(self) -> ModelEntry:
        if self.provider == "openai" and not self.base_url:
            raise ValueError("base_url: an openai entry needs the upstream's URL")
        if self.provider != "openai" and (self.base_url or self.api_key_env):
            raise ValueError("base_url and api_key_env are for openai entries only")
        if self.provider != "local" and self.model_path is not None:
            raise ValueError("model_path is for local entries only")
        if self.name in self.fallbacks:
            raise ValueError("fallbacks: an entry cannot fall back to itself")
        return self

    @property
    def sent_as(self) -> str:
        """The model id sent to the entry's provider."""
        return self.upstream_model or self.name


class Catalog(BaseModel):
    """The whole models file: its entries and the one a request without `model` gets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: str | None = None
    models: tuple[ModelEntry, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_agree(self) -> Catalog:
        names = [entry.name for entry in self.models]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"models: the name {name!r} is used twice")
        for entry in self.models:
            for fallback in entry.fallbacks:
                if fallback not in names:
                    raise ValueError(f"{entry.name}: fallbacks: no entry is named {fallback!r}")
        if self.default is not None and self.default not in names:
            raise ValueError(f"default: no entry is named {self.default!r}")
        return self

    @property
    def default_name(self) -> str:
        """The entry a request without `model` gets: `default`, or the first."""
        return self.default or self.models[0].name

    def names(self) -> list[str]:
        """Every entry's name, the default first, then in the file's order."""
        first = self.default_name
        return [first] + [entry.name for entry in self.models if entry.name != first]


def load_catalog(settings: Settings) -> Catalog:
    """The models file's catalog, or one entry made of the single-provider settings."""
    if settings.models_file is None:
        return single_entry(settings)
    # Imported here: a server without a models file never loads the YAML parser.
    import yaml

    path = settings.models_file.expanduser()
    try:
        raw = yaml.safe_load(path.read_text("utf-8"))
    except OSError as exc:
        raise CatalogError(f"cannot read the models file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"the models file {path} is not valid YAML: {exc}") from None
    try:
        return Catalog.model_validate(raw)
    except ValidationError as exc:
        raise CatalogError(f"the models file {path}: {_describe(exc, raw)}") from None


def single_entry(settings: Settings) -> Catalog:
    """Today's settings (§5) as a catalog of one entry."""
    # Not validated: these settings were accepted before there was a models file.
    entry = ModelEntry.model_construct(
        name=settings.model_name,
        provider=settings.provider,
        model_path=settings.local_model_path if settings.provider == "local" else None,
        base_url=settings.openai_base_url if settings.provider == "openai" else None,
        api_key_env=None,
        upstream_model=None,
        fallbacks=(),
    )
    return Catalog.model_construct(default=None, models=(entry,))


def api_key(entry: ModelEntry, environ: Mapping[str, str] = os.environ) -> str:
    """The key an openai entry sends: the variable its `api_key_env` names ('' without one).

    The environment is read here, once at start-up, because the file must not hold keys."""
    if entry.api_key_env is None:
        return ""
    value = environ.get(entry.api_key_env)
    if not value:
        raise CatalogError(
            f"model {entry.name!r}: api_key_env names {entry.api_key_env}, "
            "which is not set (or empty) in the environment"
        )
    return value


def check_keys(catalog: Catalog, environ: Mapping[str, str] = os.environ) -> None:
    """Fail now, naming the entry, if any entry's key variable is missing."""
    for entry in catalog.models:
        api_key(entry, environ)


def _describe(exc: ValidationError, raw: Any) -> str:
    """Each problem as `model 'big': field base_url: reason`, naming the entry by its name."""
    problems = []
    for error in exc.errors():
        where = list(error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if len(where) >= 2 and where[0] == "models" and isinstance(where[1], int):
            label = f"model {_entry_name(raw, where[1])}"
            field = ".".join(str(part) for part in where[2:])
        else:
            label, field = "", ".".join(str(part) for part in where)
        text = f"{label}: " if label else ""
        problems.append(f"{text}field {field}: {message}" if field else f"{text}{message}")
    return "; ".join(problems)


def _entry_name(raw: Any, index: int) -> str:
    try:
        name = raw["models"][index]["name"]
    except (KeyError, IndexError, TypeError):
        name = None
    return repr(name) if isinstance(name, str) else f"#{index + 1}"
