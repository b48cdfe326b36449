"""What the local models of a models file need in memory, and whether they fit, before loading.

A model needs its weights (the GGUF file, mapped whole) and its KV cache: keys and values in
f16 for every layer, `STREAMCHAT_LOCAL_SLOTS` × `STREAMCHAT_LOCAL_CONTEXT_TOKENS` positions.
The layer and head counts come from the GGUF's header (llama.cpp reads it without the
weights), so the figure is known before anything is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from .llamacpp import load_runtime
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
    lib = load_runtime()
    params = lib.llama_model_default_params()
    params.vocab_only = True  # the header and vocabulary: the hyper-parameters, no weights
    model = lib.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise LocalModelError(f"llama.cpp cannot read the header of {path}")
    try:
        head = lib.llama_model_n_embd(model) // max(1, lib.llama_model_n_head(model))
        return int(2 * lib.llama_model_n_layer(model) * lib.llama_model_n_head_kv(model) * head * 2)
    finally:
        lib.llama_model_free(model)


def available_memory(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Bytes the kernel says can be used without swapping (`MemAvailable`); None if unknown."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_fit(needs: list[Need], available: int | None) -> None:
    """Fail, naming every model and its share, if together they need more than is available."""
    total = sum(n.total for n in needs)
    if available is None or total <= available:
        return
    shares = "; ".join(n.describe() for n in needs)
    raise LocalModelError(
        f"the local models need {total / _MB:.0f} MB together but {available / _MB:.0f} MB "
        f"is available ({shares}); remove a local model from STREAMCHAT_MODELS_FILE, or "
        "lower STREAMCHAT_LOCAL_SLOTS or STREAMCHAT_LOCAL_CONTEXT_TOKENS"
    )
