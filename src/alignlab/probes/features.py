"""Last-token hidden states of short texts, batched, and the model's own True/False answer.

Batches are padded on the right and each row is read at its last real token (the attention
mask's last 1): with a causal model the pads come after every real token, so the states at
real positions equal those of the text run alone (tests check this against unbatched runs
for every family). Texts are batched shortest first to waste little compute on padding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..activations import Site, run_with_sites
from ..errors import DataError
from ..models.loader import LoadedModel

DEFAULT_BATCH = 32


@dataclass
class LastTokenStates:
    """``resid.{layer}`` at each text's last token, for every requested layer."""

    acts: Tensor  # (L, N, d) float32, on CPU
    layers: list[int]  # resid layer of each row of ``acts``
    logprob: Tensor | None = None  # (N,) sum of log P(token | prefix) over the text


def encode(lm: LoadedModel, texts: Sequence[str]) -> list[list[int]]:
    """Token ids per text, with the tokenizer's own special tokens (BOS where it adds one)."""
    if not texts:
        raise DataError("no texts to encode; the dataset selection is empty")
    ids = lm.tokenizer(list(texts)).input_ids
    empty = [t for t, row in zip(texts, ids) if not row]
    if empty:
        raise DataError(f"text {empty[0]!r} encodes to no tokens; remove empty statements")
    return ids


def pad_right(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """(ids, attention_mask), both (B, T): real tokens first, pads after."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def pad_id(lm: LoadedModel) -> int:
    tok = lm.tokenizer
    for candidate in (tok.pad_token_id, tok.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0  # pragma: no cover


def _batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def last_positions(mask: Tensor) -> Tensor:
    """Index of each row's last real token in a right-padded batch: (B,)."""
    return mask.sum(dim=1) - 1


@torch.no_grad()
def last_token_states(lm: LoadedModel, texts: Sequence[str], layers: Sequence[int] | None = None,
                      batch_size: int = DEFAULT_BATCH, logprob_mask: Sequence[bool] | None = None,
                      progress: Callable[[int, int], None] | None = None) -> LastTokenStates:
    """``resid.{l}`` at the last token of every text, for ``layers`` (default: all).

    With ``logprob_mask``, the texts' log-probabilities are computed too, where the mask is
    true (NaN elsewhere), from the last block's output through the final norm and the
    unembedding, so texts that do not need them skip the costly vocabulary projection.
    """
    layers = list(range(lm.n_layers + 1)) if layers is None else list(layers)
    sites = [Site("resid", layer) for layer in layers]
    final = Site("resid", lm.n_layers)
    wanted_sites = sites if (logprob_mask is None or final in sites) else [*sites, final]
    ids = encode(lm, texts)
    acts = torch.empty(len(layers), len(texts), lm.d_model)
    logprob = None if logprob_mask is None else torch.full((len(texts),), float("nan"))
    done = 0
    for batch in _batches([len(r) for r in ids], batch_size):
        input_ids, mask = pad_right([ids[i] for i in batch], pad_id(lm))
        captured = run_with_sites(lm, input_ids, wanted_sites, attention_mask=mask)
        last = last_positions(mask).to(lm.device)  # (B,)
        rows = torch.arange(len(batch), device=lm.device)
        for j, site in enumerate(sites):
            acts[j, batch] = captured.acts[site.name][rows, last].float().cpu()  # (B, d)
        if logprob is not None:
            need = [k for k, i in enumerate(batch) if logprob_mask[i]]
            if need:
                hidden = captured.acts[final.name][need]  # (b, T, d)
                logits = lm.anatomy.unembed(hidden)
                scored = _sequence_logprob(logits, input_ids[need].to(lm.device), mask[need].to(lm.device))
                logprob[[batch[k] for k in need]] = scored.cpu()
        done += len(batch)
        if progress is not None:
            progress(done, len(texts))
    return LastTokenStates(acts, layers, logprob)


def _sequence_logprob(logits: Tensor, ids: Tensor, mask: Tensor) -> Tensor:
    """Sum over real positions t >= 1 of log P(ids[t] | ids[:t]): (B,)."""
    logp = logits[:, :-1].float().log_softmax(-1)  # (B, T-1, V)
    picked = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
    return (picked * mask[:, 1:]).sum(dim=1)


@dataclass(frozen=True)
class AnswerTokens:
    """How two answers are told apart: a shared token prefix, then one token each."""

    prefix: list[int]  # appended to every prompt (e.g. the space byte for a byte tokenizer)
    first: int  # the token that starts answer 0 after the prefix (" True")
    second: int  # ... and answer 1 (" False")


def answer_tokens(lm: LoadedModel, answers: tuple[str, str]) -> AnswerTokens:
    a = lm.tokenizer(answers[0], add_special_tokens=False).input_ids
    b = lm.tokenizer(answers[1], add_special_tokens=False).input_ids
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    if n == len(a) or n == len(b):
        raise DataError(f"answers {answers!r} tokenize so that one is a prefix of the other; "
                        "choose answers that differ in some token")
    return AnswerTokens(a[:n], a[n], b[n])


@torch.no_grad()
def answer_probability(lm: LoadedModel, prompts: Sequence[str], answers: tuple[str, str],
                       batch_size: int = DEFAULT_BATCH) -> Tensor:
    """P(answer 0) / (P(answer 0) + P(answer 1)) after each prompt: (N,).

    Any hooks the caller registered on the model (a steering vector) apply.
    """
    tokens = answer_tokens(lm, answers)
    final = Site("resid", lm.n_layers)
    ids = [row + tokens.prefix for row in encode(lm, prompts)]
    out = torch.empty(len(prompts))
    for batch in _batches([len(r) for r in ids], batch_size):
        input_ids, mask = pad_right([ids[i] for i in batch], pad_id(lm))
        # the last block's output, then the final norm and unembedding at the last real token
        # only: the vocabulary projection at every position would cost a quarter of the pass
        captured = run_with_sites(lm, input_ids, [final], attention_mask=mask)
        last = last_positions(mask).to(lm.device)
        hidden = captured.acts[final.name][torch.arange(len(batch), device=lm.device), last]  # (B, d)
        logits = lm.anatomy.unembed(hidden).float()  # (B, V)
        pair = logits[:, [tokens.first, tokens.second]].log_softmax(-1)  # (B, 2)
        out[batch] = pair[:, 0].exp().cpu()
    return out
