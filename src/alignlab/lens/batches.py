"""Residual rows: what lenses train and evaluate on, from the model on the fly (or a store).

A :class:`ResidRows` holds, for ``N`` token positions, the residual stream at every depth
``resid.0 .. resid.L`` (``resid.L`` is the last block's output, which the model's own final
norm and unembedding turn into its prediction), the next token at each position, and the
number of UTF-8 bytes those next tokens decode to (for bits per byte).

Trainers and evaluators take any iterable of ``ResidRows``; :class:`ModelRows` makes them by
running the model over token rows, :class:`StoreRows` by reading ``resid.*`` from an
activation store (``alignlab harvest``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..activations import ActivationStore, run_with_sites
from ..activations.sites import Site
from ..errors import ConfigError, StoreError
from ..models import LoadedModel


@dataclass
class ResidRows:
    """Residuals at every depth for ``N`` positions, with their next tokens."""

    resid: Tensor  # (L+1, N, d): resid.0 .. resid.L
    targets: Tensor  # (N,) int64: the token that follows each position
    n_bytes: int  # UTF-8 bytes of the text the targets decode to

    @property
    def n_rows(self) -> int:
        return self.resid.shape[1]


def positions_kept(seq_len: int, skip_first: int) -> range:
    """Positions with a next token, after leaving out the first ``skip_first`` of each row.

    Position 0 holds BOS, whose residual is an outlier (the attention sink, Xiao et al. 2023)
    and whose prediction is unconditioned, so by default it is left out of training and
    metrics alike.
    """
    return range(skip_first, seq_len - 1)


def check_skip_first(seq_len: int, skip_first: int) -> None:
    if skip_first < 0:
        raise ConfigError(f"skip_first must be 0 or more, got {skip_first}")
    if len(positions_kept(seq_len, skip_first)) < 1:
        raise ConfigError(
            f"skip_first={skip_first} leaves no position with a next token in rows of "
            f"{seq_len} tokens; use a longer seq_len or a smaller skip_first"
        )


def decoded_bytes(tokenizer, ids: Tensor) -> int:
    """UTF-8 bytes of the text one row of ids decodes to (special tokens count as none)."""
    return len(tokenizer.decode(ids.tolist(), skip_special_tokens=True).encode("utf-8"))


@torch.no_grad()
def rows_from_tokens(lm: LoadedModel, tokens: Tensor, skip_first: int = 1) -> ResidRows:
    """Run ``tokens`` (B, T) through the model and keep the residual at every kept position."""
    check_skip_first(tokens.shape[1], skip_first)
    sites = [Site("resid", i) for i in range(lm.n_layers + 1)]
    # No logits needed: the forward stops after the last block (the final norm and unembedding
    # are applied by the lens code itself, on resid.L).
    captured = run_with_sites(lm, tokens, sites)
    return resid_rows([captured.acts[s.name] for s in sites], tokens, skip_first, lm.tokenizer)


def resid_rows(resid: list[Tensor], tokens: Tensor, skip_first: int, tokenizer) -> ResidRows:
    """:class:`ResidRows` from ``resid.0 .. resid.L`` (each (B, T, d)) of token rows (B, T)."""
    n_seq, seq_len = tokens.shape
    keep = positions_kept(seq_len, skip_first)
    stacked = torch.stack([r[:, keep.start : keep.stop] for r in resid])  # (L+1, B, len(keep), d)
    stacked = stacked.reshape(len(resid), n_seq * len(keep), stacked.shape[-1])  # (L+1, N, d)
    next_ids = tokens[:, keep.start + 1 : keep.stop + 1]  # (B, len(keep))
    n_bytes = sum(decoded_bytes(tokenizer, row) for row in next_ids)
    return ResidRows(stacked.float(), next_ids.reshape(-1).to(stacked.device), n_bytes)


def _visit_order(n: int, shuffle: bool, seed: int, passes: int) -> Tensor:
    """Row order of one pass: the same for :class:`ModelRows` and :class:`StoreRows`."""
    if not shuffle:
        return torch.arange(n)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + passes)
    return torch.randperm(n, generator=gen)


class ModelRows:
    """Re-iterable source of :class:`ResidRows`: ``batch_size`` token rows per batch.

    With ``shuffle``, each pass visits the rows in a new order drawn from ``seed`` and the pass
    number, so a training run is the same every time it is repeated.
    """

    def __init__(self, lm: LoadedModel, tokens: Tensor, batch_size: int, skip_first: int = 1,
                 shuffle: bool = False, seed: int = 0):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        check_skip_first(tokens.shape[1], skip_first)
        self.lm, self.tokens, self.batch_size = lm, tokens, batch_size
        self.skip_first, self.shuffle, self.seed = skip_first, shuffle, seed
        self.passes = 0

    def __len__(self) -> int:
        return -(-self.tokens.shape[0] // self.batch_size)

    def __iter__(self) -> Iterator[ResidRows]:
        order = _visit_order(self.tokens.shape[0], self.shuffle, self.seed, self.passes)
        self.passes += 1
        for start in range(0, len(order), self.batch_size):
            batch = self.tokens[order[start : start + self.batch_size]]  # (B, T)
            yield rows_from_tokens(self.lm, batch, self.skip_first)


class StoreRows:
    """:class:`ResidRows` read from an activation store instead of computed by the model.

    ``seqs`` are the store's sequence numbers to use, ``batch_size`` of them per batch. Given
    the same rows in the same order, ``batch_size``, ``skip_first``, ``shuffle`` and ``seed``,
    the batches are those :class:`ModelRows` makes (up to the store's dtype): the same order
    of rows, positions and targets, so a lens trained from a store is the lens trained on the
    fly. The store must hold ``resid.0 .. resid.{n_layers}``; the model's head is not stored,
    since the trainer recomputes the final distribution from ``resid.{n_layers}``.
    """

    def __init__(self, store: ActivationStore, seqs: Sequence[int], n_layers: int, tokenizer,
                 batch_size: int, skip_first: int = 1, shuffle: bool = False, seed: int = 0):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        check_skip_first(store.seq_len, skip_first)
        self.sites = [f"resid.{i}" for i in range(n_layers + 1)]
        missing = [s for s in self.sites if s not in store.widths]
        if missing:
            raise StoreError(
                f"store {str(store.path)!r} lacks {', '.join(missing[:3])}"
                f"{'...' if len(missing) > 3 else ''}; a tuned lens needs resid.0..resid.{n_layers}: "
                f"harvest with --sites 'resid.*'"
            )
        self.store, self.seqs, self.tokenizer = store, torch.as_tensor(list(seqs)), tokenizer
        self.batch_size, self.skip_first = batch_size, skip_first
        self.shuffle, self.seed = shuffle, seed
        self.passes = 0

    def __len__(self) -> int:
        return -(-len(self.seqs) // self.batch_size)

    def __iter__(self) -> Iterator[ResidRows]:
        order = _visit_order(len(self.seqs), self.shuffle, self.seed, self.passes)
        self.passes += 1
        for start in range(0, len(order), self.batch_size):
            yield self.read(self.seqs[order[start : start + self.batch_size]])

    def read(self, seqs: Tensor) -> ResidRows:
        """The rows of store sequences ``seqs`` (B,), as :func:`rows_from_tokens` makes them."""
        seq_len = self.store.seq_len
        index = (seqs[:, None] * seq_len + torch.arange(seq_len)).reshape(-1)  # (B * T,)
        batch = self.store.rows(index, self.sites)
        shape = (len(seqs), seq_len, -1)
        resid = [batch.acts[s].reshape(shape) for s in self.sites]  # each (B, T, d)
        return resid_rows(resid, batch.tokens.reshape(len(seqs), seq_len), self.skip_first,
                          self.tokenizer)
