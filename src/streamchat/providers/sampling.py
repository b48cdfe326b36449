"""Choosing each next token: llama.cpp's sampler chain, and a grammar when one is asked for.

A grammar (GBNF) decides, for every token of the vocabulary, whether it may come next. Asking
it about all 150,000 at every step costs a third of the model's own time on the small models,
so it is asked the way llama.cpp's own server does: the chain picks a token as usual, and
only if the grammar refuses that one are all the others weighed against it and the pick made
again. The model mostly writes what the grammar wants, so the whole vocabulary is seldom
checked.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from typing import Any

from .base import UpstreamBadResponse

# Qwen2.5's recommended sampling, besides temperature and top_p which are settings.
_TOP_K = 20
_REPEAT_PENALTY = 1.05
_PENALTY_LAST_N = 64


@dataclass(slots=True, frozen=True)
class Sampling:
    """One sequence's sampling parameters; `grammar` (GBNF) constrains the whole output."""

    temperature: float
    top_p: float
    seed: int | None
    grammar: str | None = None


class Sampler:
    """A llama.cpp sampler chain (penalties, top-k, top-p, temperature, then a draw), and the
    grammar its picks must fit, if any."""

    def __init__(self, lib: Any, ctx: Any, vocab: Any, sampling: Sampling) -> None:
        self._lib, self._ctx = lib, ctx
        self._grammar: _Grammar | None = None
        if sampling.grammar is not None:
            self._grammar = _Grammar(lib, ctx, vocab, sampling.grammar)
        self._chain = chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        add = lib.llama_sampler_chain_add
        # The binding declares an old first argument (n_vocab) that llama.cpp's C function no
        # longer takes; integers and floats travel in separate registers, so giving the
        # window twice is right for either signature.
        window = _PENALTY_LAST_N
        add(chain, lib.llama_sampler_init_penalties(window, window, _REPEAT_PENALTY, 0.0, 0.0))
        if sampling.temperature <= 0:
            add(chain, lib.llama_sampler_init_greedy())
            return
        seed = lib.LLAMA_DEFAULT_SEED if sampling.seed is None else sampling.seed
        add(chain, lib.llama_sampler_init_top_k(_TOP_K))
        add(chain, lib.llama_sampler_init_top_p(sampling.top_p, 1))
        add(chain, lib.llama_sampler_init_temp(sampling.temperature))
        add(chain, lib.llama_sampler_init_dist(seed & 0xFFFFFFFF))

    def sample(self, index: int) -> int:
        """Draw the next token from the logits of batch entry `index` (and remember it)."""
        if self._grammar is None:
            return int(self._lib.llama_sampler_sample(self._chain, self._ctx, index))
        return self._grammar.sample(self._chain, index)

    def free(self) -> None:
        """Free the chain, its samplers and the grammar."""
        self._lib.llama_sampler_free(self._chain)
        if self._grammar is not None:
            self._grammar.free()


class _Grammar:
    """A grammar sampler, and the candidate array the chain and it are applied to."""

    def __init__(self, lib: Any, ctx: Any, vocab: Any, grammar: str) -> None:
        import numpy as np  # llama-cpp-python's own dependency: there only with the local model

        self._lib, self._ctx, self._np = lib, ctx, np
        self._sampler = lib.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        if not self._sampler:
            raise UpstreamBadResponse("llama.cpp refused the grammar made for this request")
        n = self._n = int(lib.llama_vocab_n_tokens(vocab))
        self._ids = np.arange(n, dtype=np.int32)
        cell = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
        self._cells = np.zeros(n, dtype=cell)  # laid out as llama_token_data
        cells = self._cells.ctypes.data_as(ctypes.POINTER(lib.llama_token_data))
        self._all = lib.llama_token_data_array(data=cells, size=n, selected=-1, sorted=False)
        self._one_cell = one = (lib.llama_token_data * 1)()
        self._one = lib.llama_token_data_array(data=one, size=1, selected=-1, sorted=False)

    def sample(self, chain: Any, index: int) -> int:
        """The chain's pick if the grammar allows it; else its pick among what the grammar
        allows. Both the chain and the grammar then take the token in."""
        lib = self._lib
        self._fill(index)
        lib.llama_sampler_apply(chain, ctypes.byref(self._all))
        token = int(self._all.data[self._all.selected].id)
        if not self._allows(token):
            self._fill(index)
            lib.llama_sampler_apply(self._sampler, ctypes.byref(self._all))
            lib.llama_sampler_apply(chain, ctypes.byref(self._all))
            token = int(self._all.data[self._all.selected].id)
        lib.llama_sampler_accept(self._sampler, token)
        lib.llama_sampler_accept(chain, token)
        return token

    def _fill(self, index: int) -> None:
        """The candidates afresh: every token with its logit from batch entry `index`."""
        logits = self._lib.llama_get_logits_ith(self._ctx, index)
        self._cells["id"] = self._ids
        self._cells["logit"] = self._np.ctypeslib.as_array(logits, shape=(self._n,))
        self._cells["p"] = 0.0
        self._all.size, self._all.selected, self._all.sorted = self._n, -1, False

    def _allows(self, token: int) -> bool:
        cell = self._one_cell[0]
        cell.id, cell.logit, cell.p = token, 1.0, 0.0
        self._one.size, self._one.selected, self._one.sorted = 1, -1, False
        self._lib.llama_sampler_apply(self._sampler, ctypes.byref(self._one))
        return not math.isinf(self._one_cell[0].logit)

    def free(self) -> None:
        """Free the grammar sampler."""
        self._lib.llama_sampler_free(self._sampler)
