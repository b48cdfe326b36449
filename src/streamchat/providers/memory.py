"""What the local models of a models file need in memory, and whether they fit, before loading.

A model needs its weights (the GGUF file, mapped whole) and its KV cache: keys and values in
f16 for every layer, `STREAMCHAT_LOCAL_SLOTS` × `STREAMCHAT_LOCAL_CONTEXT_TOKENS` positions.
The layer and head counts come from the GGUF's key-value header, read here (llama.cpp's
loader would map the weights first), so the figure is known before anything is loaded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..config import Settings
from .model_files import LocalModelError

_MB = 1024 * 1024


@dataclass(slots=True, frozen=True)
class Need:
    """One local model's memory: its weights and its KV cache, in bytes."""

    name: str
    weights: int
    kv_cache: int

    @property
    def total(self) -> int:
        """Weights and KV cache together."""
        return self.weights + self.kv_cache

    def describe(self) -> str:
        """`name: 1100 MB (weights 990 MB, KV cache 112 MB)`."""
        return (
            f"{self.name}: {self.total / _MB:.0f} MB (weights {self.weights / _MB:.0f} MB, "
            f"KV cache {self.kv_cache / _MB:.0f} MB)"
        )


def need(name: str, path: Path, settings: Settings) -> Need:
    """What the model at `path` needs, loaded with `settings`' slots and context."""
    cells = settings.local_slots * settings.local_context_tokens
    return Need(name, path.stat().st_size, kv_bytes_per_token(path) * cells)


def kv_bytes_per_token(path: Path) -> int:
    """The KV cache of one position: keys and values, f16, every layer (as engine.py sizes it)."""
    meta = gguf_metadata(path)
    arch = meta.get("general.architecture")

    def count(name: str, default: int | None = None) -> int:
        value = meta.get(f"{arch}.{name}", default)
        if isinstance(value, list):  # a count per layer: the largest bounds the cache
            value = max((v for v in value if isinstance(v, int)), default=None)
        if not isinstance(value, int) or isinstance(value, bool):
            raise LocalModelError(f"{path} does not say its model's {name}")
        return value

    heads = count("attention.head_count")
    head_size = count("embedding_length") // max(1, heads)
    return 2 * count("block_count") * count("attention.head_count_kv", heads) * head_size * 2


# GGUF value types (ggml's gguf.h): fixed-size ones by struct format; 8 string, 9 array.
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9


def gguf_metadata(path: Path) -> dict[str, object]:
    """The key-value header of a GGUF file (arrays of strings, such as the vocabulary, are
    skipped: only their place is read). llama.cpp's own loader needs the weights for this."""
    try:
        with path.open("rb") as file:
            magic, _version, _tensors, count = struct.unpack("<4sIQQ", file.read(24))
            if magic != b"GGUF":
                raise LocalModelError(f"{path} is not a GGUF model file")
            return dict(_entry(file) for _ in range(count))
    except (OSError, struct.error, UnicodeDecodeError) as exc:
        raise LocalModelError(f"cannot read the header of {path}: {exc}") from None


def _entry(file: BinaryIO) -> tuple[str, object]:
    key = _string(file)
    (kind,) = struct.unpack("<I", file.read(4))
    return key, _value(file, kind)


def _value(file: BinaryIO, kind: int) -> object:
    if kind == _STRING:
        return _string(file)
    if kind == _ARRAY:
        item, length = struct.unpack("<IQ", file.read(12))
        if item == _STRING:
            for _ in range(length):  # the vocabulary: skipped, not kept
                (size,) = struct.unpack("<Q", file.read(8))
                file.seek(size, 1)
            return None
        return [_value(file, item) for _ in range(length)]
    fmt = "<" + _SCALARS[kind]
    return struct.unpack(fmt, file.read(struct.calcsize(fmt)))[0]


def _string(file: BinaryIO) -> str:
    (size,) = struct.unpack("<Q", file.read(8))
    return file.read(size).decode("utf-8")


def available_memory(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Bytes the kernel says can be used without swapping (`MemAvailable`); None if unknown."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_fit(needs: list[Need], settings: Settings) -> None:
    """Fail, naming every model and its share, if together they need more than the budget:
    `STREAMCHAT_LOCAL_MEMORY_MB`, or what the kernel says is available."""
    total = sum(n.total for n in needs)
    if settings.local_memory_mb:
        available: int | None = settings.local_memory_mb * _MB
        budget = f"STREAMCHAT_LOCAL_MEMORY_MB allows {settings.local_memory_mb} MB"
    else:
        available = available_memory()
        budget = f"{(available or 0) / _MB:.0f} MB is available"
    if available is None or total <= available:
        return
    shares = "; ".join(n.describe() for n in needs)
    raise LocalModelError(
        f"the local models need {total / _MB:.0f} MB together but {budget} ({shares}); "
        "remove a local model from STREAMCHAT_MODELS_FILE, or lower STREAMCHAT_LOCAL_SLOTS "
        "or STREAMCHAT_LOCAL_CONTEXT_TOKENS"
    )
