"""A byte-level tokenizer built offline, for the tiny random-weight test models.

Every UTF-8 byte is one token (ids 0-255, GPT-2's byte-to-unicode alphabet), followed by
``<|bos|>`` (256) and ``<|eos|>`` (257). Nothing is downloaded and the vocabulary is tiny.
"""

from __future__ import annotations

from functools import lru_cache

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

BYTE_VOCAB = 258


@lru_cache(maxsize=1)
def _byte_alphabet() -> list[str]:
    return pre_tokenizers.ByteLevel.alphabet()


def byte_tokenizer() -> PreTrainedTokenizerFast:
    alphabet = sorted(_byte_alphabet(), key=lambda ch: _byte_value(ch))
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab["<|bos|>"] = 256
    vocab["<|eos|>"] = 257
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|eos|>"
    )
    return tok


@lru_cache(maxsize=1)
def _byte_values() -> dict[str, int]:
    # GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to 256+n.
    printable = list(range(ord("!"), ord("~") + 1))
    printable += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def _byte_value(ch: str) -> int:
    return _byte_values()[ch]
