"""Text corpora turned into fixed-length token batches.

``read_corpus(spec)`` gives a ``Corpus`` (``builtin``, a .txt/.jsonl/.parquet file, or a
Hugging Face datasets name); ``tokenize_corpus`` packs it into ``TokenBlocks`` of BOS-led rows;
``iter_batches`` walks them in order.
"""

from alignlab.data.builtin import builtin_info
from alignlab.data.corpus import Corpus, read_corpus
from alignlab.data.tokens import TokenBlocks, iter_batches, tokenize_corpus

__all__ = [
    "Corpus",
    "TokenBlocks",
    "builtin_info",
    "iter_batches",
    "read_corpus",
    "tokenize_corpus",
]
