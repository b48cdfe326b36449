"""The llama.cpp boundary: load a GGUF, apply its chat template, generate token by token.

Everything that touches `llama_cpp` is here, and its errors become ours here, once. A `Llama`
object is not thread-safe (two threads on one crash the process), so a `LlamaModel` is created,
used and closed by the local provider's single worker thread; only `interrupt` may be called
from elsewhere.
"""

from __future__ import annotations

import codecs
import ctypes
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .base import Finish, ProviderError, ProviderEvent, TextDelta, TokenUsage, UpstreamBadResponse
from .model_files import LocalModelError
from .stops import StopScanner

if TYPE_CHECKING:
    from llama_cpp import Llama

_llama_log = logging.getLogger("streamchat.llama_cpp")

# Qwen2.5's recommended sampling, besides temperature and top_p which are settings.
_TOP_K = 20
_REPEAT_PENALTY = 1.05

Emit = Callable[[ProviderEvent | ProviderError | None], None]


@dataclass(slots=True, eq=False)
class Job:
    """One generation handed to the worker thread; `emit` (thread-safe) carries events back.

    `emit(None)` is always the last call: the generation is over.
    """

    messages: list[dict[str, str]]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: list[str]
    emit: Emit
    cancelled: threading.Event = field(default_factory=threading.Event)
    cancelled_at: float = 0.0
    stats: str = ""


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


class _AbortSwitch:
    """Lets another thread stop a `llama_decode` between two graph nodes, without the GIL.

    llama.cpp calls an abort callback after every node of the compute graph. A Python callback
    would take the GIL hundreds of times per token and stall on a busy event loop, so the
    callback is libc's `strlen` on a two-byte buffer: it returns 1 (abort) once the first byte
    is set, 0 otherwise.
    """

    def __init__(self, llama_cpp: Any, ctx: Any) -> None:
        self._flag = ctypes.create_string_buffer(2)
        self._lock = threading.Lock()
        self._job: Job | None = None
        setter = llama_cpp.llama_cpp._lib.llama_set_abort_callback
        setter.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        setter.restype = None
        strlen = ctypes.cast(ctypes.CDLL(None).strlen, ctypes.c_void_p)
        setter(ctx, strlen, ctypes.addressof(self._flag))

    def arm(self, job: Job | None) -> None:
        """`job` is now the one running (None: none is); closed already, it aborts at once."""
        with self._lock:
            self._job = job
            aborted = job is not None and job.cancelled.is_set()
            self._flag[0] = b"\x01" if aborted else b"\x00"

    def fire(self, job: Job) -> None:
        """Abort the running decode if it belongs to `job`."""
        with self._lock:
            if self._job is job:
                self._flag[0] = b"\x01"


class LlamaModel:
    """A loaded GGUF chat model. Owned by one thread; see the module docstring."""

    def __init__(self, path: Path, *, context_tokens: int, threads: int, system_prompt: str):
        self._llama_cpp = llama_cpp = load_runtime()
        try:
            self._llama: Llama = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=context_tokens,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        except ValueError:
            raise _unloadable(path) from None
        self._vocab = llama_cpp.llama_model_get_vocab(self._llama.model)
        self._template = _chat_template(llama_cpp, self._llama)
        self._system_prompt = system_prompt
        self._abort = _AbortSwitch(llama_cpp, self._llama.ctx)

    def interrupt(self, job: Job) -> None:
        """Stop `job` now, from any thread: between tokens, or in the middle of a decode."""
        job.cancelled_at = time.monotonic()
        job.cancelled.set()
        self._abort.fire(job)

    def close(self) -> None:
        """Free the model's memory."""
        self._llama.close()

    def run(self, job: Job) -> None:
        """Generate `job` to its end, reporting through `job.emit`; never raises."""
        if job.cancelled.is_set():
            job.stats = "cancelled while queued"
            job.emit(None)
            return
        self._abort.arm(job)
        try:
            self._generate(job)
        except ProviderError as exc:
            job.stats = f"failed: {exc.detail}"
            job.emit(exc)
        except Exception as exc:  # anything llama.cpp raises: a failed or aborted decode
            if job.cancelled.is_set():
                job.stats = _cancelled_stats(job)
            else:
                job.stats = f"failed: {exc}"
                job.emit(UpstreamBadResponse(f"the local model failed: {exc}"))
        finally:
            self._abort.arm(None)
            job.emit(None)

    def _generate(self, job: Job) -> None:
        started = time.monotonic()
        prompt = self._prompt(job.messages)
        room = self._llama.n_ctx() - len(prompt)
        if room <= 0:
            raise UpstreamBadResponse(
                f"the conversation is {len(prompt)} tokens long, the model's context holds "
                f"{self._llama.n_ctx()} (STREAMCHAT_LOCAL_CONTEXT_TOKENS)"
            )
        # llama.cpp's seed is 32 bits; OpenAI's is 64 (and may be negative): keep the low bits.
        seed = job.seed & 0xFFFFFFFF if job.seed is not None else self._llama_cpp.LLAMA_DEFAULT_SEED
        self._llama.set_seed(seed)
        tokens = self._llama.generate(
            prompt,
            top_k=_TOP_K,
            top_p=job.top_p,
            min_p=0.0,
            temp=job.temperature,
            repeat_penalty=_REPEAT_PENALTY,
        )
        try:
            answer = self._answer(job, tokens, min(job.max_tokens, room))
        finally:
            tokens.close()
        if answer is None:
            job.stats = _cancelled_stats(job)
            return
        job.emit(TokenUsage(prompt_tokens=len(prompt), completion_tokens=answer.tokens))
        job.emit(Finish(answer.reason))
        first = answer.first_at - started if answer.tokens else 0.0
        spent = answer.last_at - answer.first_at
        rate = (answer.tokens - 1) / spent if spent > 0 else 0.0
        job.stats = (
            f"{len(prompt)} prompt tokens, {answer.tokens} tokens, {answer.reason}, "
            f"first after {first:.2f} s, {rate:.1f} tokens/s"
        )

    def _answer(self, job: Job, tokens: Iterator[int], budget: int) -> _Answer | None:
        """Send the text of each token as it comes; None if the job was cancelled."""
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        stops = StopScanner(job.stop)
        answer = _Answer()
        for token in tokens:
            if job.cancelled.is_set():
                return None
            if self._llama_cpp.llama_vocab_is_eog(self._vocab, token):
                answer.reason = "stop"
                break
            answer.tokens += 1
            answer.last_at = time.monotonic()
            answer.first_at = answer.first_at or answer.last_at
            text, stopped = stops.feed(decoder.decode(self._llama.detokenize([token])))
            if text:
                job.emit(TextDelta(text))
            if stopped:
                answer.reason = "stop"
                return answer
            if answer.tokens >= budget:
                break
        if rest := stops.flush(decoder.decode(b"", final=True)):
            job.emit(TextDelta(rest))
        return answer

    def _prompt(self, messages: list[dict[str, str]]) -> list[int]:
        if self._system_prompt and not any(m["role"] == "system" for m in messages):
            messages = [{"role": "system", "content": self._system_prompt}, *messages]
        try:
            text = self._template(messages=messages).prompt
        except Exception as exc:  # the model's Jinja template refused the conversation
            raise UpstreamBadResponse(f"the model's chat template failed: {exc}") from exc
        return self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)


@dataclass(slots=True)
class _Answer:
    tokens: int = 0
    reason: Literal["stop", "length"] = "length"
    first_at: float = 0.0
    last_at: float = 0.0


def _cancelled_stats(job: Job) -> str:
    return f"cancelled, stopped {(time.monotonic() - job.cancelled_at) * 1000:.0f} ms after close"


def _chat_template(llama_cpp: Any, llama: Llama) -> Any:
    """The GGUF's own chat template; ChatML (Qwen's format) if the file has none."""
    formats = llama_cpp.llama_chat_format
    template = llama.metadata.get("tokenizer.chat_template", formats.CHATML_CHAT_TEMPLATE)

    vocab = llama_cpp.llama_model_get_vocab(llama.model)

    def text(token: int) -> str:
        return llama_cpp.llama_vocab_get_text(vocab, token).decode() if token != -1 else ""

    return formats.Jinja2ChatFormatter(
        template=template, eos_token=text(llama.token_eos()), bos_token=text(llama.token_bos())
    )
