"""The llama.cpp boundary: load a GGUF, tokenize, decode batches of sequences, sample.

Everything that touches `llama_cpp` is here, and its errors become ours here, once. This is
llama-cpp-python's low-level API (the C functions), not its `Llama` class: one context holds
several sequences (`n_seq_max` slots), each with its own part of the KV cache, so that one
`llama_decode` advances every running answer by a token. A context is not thread-safe (two
threads on one crash the process), so a `NativeModel` is created, used and closed by the
engine's single thread; only `tokenize`, `AbortSwitch.fire` and reading the vocabulary may be
done from elsewhere (llama.cpp's own server tokenizes in its HTTP threads too).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import threading
from pathlib import Path
from typing import Any

from .base import UpstreamBadResponse
from .model_files import LocalModelError
from .sampling import Sampler, Sampling

_llama_log = logging.getLogger("streamchat.llama_cpp")

BATCH_TOKENS = 512  # the most tokens one `llama_decode` takes (llama.cpp's n_batch)


def load_runtime() -> Any:
    """The `llama_cpp` module, or a `LocalModelError` that says how to install it."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise LocalModelError(
            f"the llama.cpp runtime is not installed ({exc}): pip install 'streamchat[local]' "
            "(make run does it), or use STREAMCHAT_PROVIDER=openai with an OpenAI-compatible server"
        ) from None
    _route_logs(llama_cpp)
    return llama_cpp


@functools.cache
def _route_logs(llama_cpp: Any) -> Any:
    """Send llama.cpp's own messages (chatty on stderr by default) to our log, at debug level.

    Its failures reach the user as our errors instead; STREAMCHAT_LOG_LEVEL=debug shows them.
    """

    def log_message(level: int, text: bytes, user_data: Any) -> None:
        if message := text.decode("utf-8", "replace").strip():
            _llama_log.debug("%s", message)

    forward = llama_cpp.llama_log_callback(log_message)
    llama_cpp.llama_log_set(forward, ctypes.c_void_p(0))
    return forward  # the cache keeps the callback alive as long as llama.cpp may call it


def check_loadable(path: Path) -> None:
    """Fail fast on a damaged or unsupported GGUF: read its header, tensor table and vocabulary."""
    llama_cpp = load_runtime()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise _unloadable(path)
    llama_cpp.llama_model_free(model)


def _unloadable(path: Path) -> LocalModelError:
    return LocalModelError(
        f"llama.cpp cannot load {path}: the file is damaged or truncated, or its model "
        "architecture is not supported; delete it to have it assembled again, or point "
        "STREAMCHAT_LOCAL_MODEL_PATH at another GGUF file"
    )


class AbortSwitch:
    """Lets another thread stop a `llama_decode` between two graph nodes, without the GIL.

    llama.cpp calls an abort callback after every node of the compute graph. A Python callback
    would take the GIL hundreds of times per token and stall on a busy event loop, so the
    callback is libc's `strlen` on a two-byte buffer: it returns 1 (abort) once the first byte
    is set, 0 otherwise. `arm` names the jobs whose tokens the coming decode carries; closing
    one of them aborts it (the others' share of that step is then done again).
    """

    def __init__(self, llama_cpp: Any, ctx: Any) -> None:
        self._flag = ctypes.create_string_buffer(2)
        self._lock = threading.Lock()
        self._owners: frozenset[object] = frozenset()
        setter = llama_cpp.llama_cpp._lib.llama_set_abort_callback
        setter.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        setter.restype = None
        strlen = ctypes.cast(ctypes.CDLL(None).strlen, ctypes.c_void_p)
        setter(ctx, strlen, ctypes.addressof(self._flag))

    def arm(self, owners: frozenset[object], aborted: bool = False) -> None:
        """The coming decode carries tokens of `owners`; `aborted`: one was closed already."""
        with self._lock:
            self._owners = owners
            self._flag[0] = b"\x01" if aborted else b"\x00"

    def fire(self, owner: object) -> None:
        """Abort the running decode if it carries tokens of `owner`."""
        with self._lock:
            if owner in self._owners:
                self._flag[0] = b"\x01"


class NativeModel:
    """A GGUF model and one context of `slots` sequences, `context_tokens` each."""

    def __init__(self, path: Path, *, context_tokens: int, slots: int, threads: int) -> None:
        self.lib = lib = load_runtime()
        params = lib.llama_model_default_params()
        self._model = lib.llama_model_load_from_file(str(path).encode(), params)
        if not self._model:
            raise _unloadable(path)
        self.vocab = lib.llama_model_get_vocab(self._model)
        cparams = lib.llama_context_default_params()
        # Each sequence gets a KV cache of its own (not unified), `context_tokens` long: one
        # person's long conversation cannot take another's room, and attention reads only a
        # sequence's own cells.
        cparams.n_ctx = context_tokens * slots
        cparams.n_seq_max = slots
        cparams.kv_unified = False
        cparams.n_batch = cparams.n_ubatch = BATCH_TOKENS
        cparams.n_threads = cparams.n_threads_batch = threads
        cparams.no_perf = True
        self._ctx = lib.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            lib.llama_model_free(self._model)
            raise LocalModelError(
                f"llama.cpp could not create a context of {slots} × {context_tokens} tokens "
                "(STREAMCHAT_LOCAL_SLOTS × STREAMCHAT_LOCAL_CONTEXT_TOKENS): out of memory?"
            )
        self._memory = lib.llama_get_memory(self._ctx)
        self.slots = slots
        self.seq_context = int(lib.llama_n_ctx_seq(self._ctx))
        self.kv_bytes = self._kv_bytes(int(lib.llama_n_ctx(self._ctx)))
        self.abort = AbortSwitch(lib, self._ctx)
        self._batch = lib.llama_batch_init(BATCH_TOKENS, 0, 1)
        self._piece = ctypes.create_string_buffer(256)

    def _kv_bytes(self, cells: int) -> int:
        """What the KV cache of `cells` positions takes: keys and values, f16, every layer."""
        lib, model = self.lib, self._model
        head = lib.llama_model_n_embd(model) // max(1, lib.llama_model_n_head(model))
        per_token = 2 * lib.llama_model_n_layer(model) * lib.llama_model_n_head_kv(model) * head * 2
        return int(per_token * cells)

    def template(self) -> str | None:
        """The GGUF's own chat template (Jinja), None if it has none."""
        raw = self.lib.llama_model_chat_template(self._model, None)
        return raw.decode("utf-8") if raw else None

    def token_text(self, token: int) -> str:
        """A token's text as the vocabulary spells it (for `bos_token`/`eos_token` in templates)."""
        return "" if token < 0 else self.lib.llama_vocab_get_text(self.vocab, token).decode()

    def bos(self) -> int:
        """The beginning-of-sequence token, or -1."""
        return int(self.lib.llama_vocab_bos(self.vocab))

    def eos(self) -> int:
        """The end-of-sequence token, or -1."""
        return int(self.lib.llama_vocab_eos(self.vocab))

    def tokenize(self, text: str, *, special: bool) -> list[int]:
        """`text`'s tokens; `special`: control tokens written in it are parsed as such."""
        data = text.encode("utf-8")
        room = len(data) + 8
        while True:
            out = (self.lib.llama_token * room)()
            n = self.lib.llama_tokenize(self.vocab, data, len(data), out, room, False, special)
            if n >= 0:
                return list(out[:n])
            room = -n

    def piece(self, token: int) -> bytes:
        """The bytes a generated token stands for; control tokens are none."""
        n = self.lib.llama_token_to_piece(self.vocab, token, self._piece, 256, 0, False)
        if n < 0:  # longer than any token of a known vocabulary; be safe anyway
            buffer = ctypes.create_string_buffer(-n)
            n = self.lib.llama_token_to_piece(self.vocab, token, buffer, -n, 0, False)
            return buffer.raw[:n]
        return self._piece.raw[:n]

    def is_end(self, token: int) -> bool:
        """Whether `token` ends the answer (end of generation, end of turn)."""
        return bool(self.lib.llama_vocab_is_eog(self.vocab, token))

    def forget(self, seq: int, start: int) -> None:
        """Drop sequence `seq`'s cache from position `start` on."""
        self.lib.llama_memory_seq_rm(self._memory, seq, start, -1)

    def copy(self, source: int, target: int, count: int) -> None:
        """Make sequence `target`'s cache the first `count` positions of `source`'s.

        Each sequence has a stream of its own (not unified), and llama.cpp copies between
        streams only whole: the source's whole stream is copied (`seq_context` cells, during
        the next `decode`, before that decode writes anything), then the target drops what
        follows `count`. For the 1.5B model at 4,096 tokens that is 112 MB of memory copied:
        13 ms on two quiet cores, 30–45 on a busy machine, where decoding a token beside three
        answers takes 10–20 (bench/engine_steps.py).
        """
        memory = self._memory
        self.lib.llama_memory_seq_rm(memory, target, -1, -1)
        self.lib.llama_memory_seq_cp(memory, source, target, -1, -1)
        self.lib.llama_memory_seq_rm(memory, target, count, -1)

    def cached(self, seq: int) -> int:
        """How many positions of sequence `seq` the cache holds."""
        return int(self.lib.llama_memory_seq_pos_max(self._memory, seq)) + 1

    def decode(self, tokens: list[tuple[int, int, int, bool]]) -> int:
        """Decode (token, position, sequence, wants logits) entries at once: llama.cpp's code.

        0 is done, 2 aborted (see `AbortSwitch`), anything else a failure.
        """
        batch = self._batch
        for i, (token, pos, seq, logits) in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits
        batch.n_tokens = len(tokens)
        return int(self.lib.llama_decode(self._ctx, batch))

    def sampler(self, sampling: Sampling) -> Sampler:
        """A sampler of its own for one sequence: its penalties and random state are its own."""
        return Sampler(self.lib, self._ctx, self.vocab, sampling)

    def grammar_ok(self, grammar: str) -> bool:
        """Whether llama.cpp accepts `grammar` (GBNF); any thread may ask."""
        made = self.lib.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")
        if made:
            self.lib.llama_sampler_free(made)
        return bool(made)

    def close(self) -> None:
        """Free the context, the batch and the model."""
        self.lib.llama_batch_free(self._batch)
        self.lib.llama_free(self._ctx)
        self.lib.llama_model_free(self._model)


def decode_failed(code: int) -> UpstreamBadResponse:
    """The error a failed `llama_decode` is to the client."""
    return UpstreamBadResponse(f"the local model failed to decode (llama_decode returned {code})")
