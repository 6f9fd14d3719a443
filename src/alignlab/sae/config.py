"""Typed configs of the ``alignlab sae`` verbs: they only validate (ConfigError on conflicts)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import opt
from ..errors import ConfigError
from .arch import DEFAULT_ARCH, architecture_names
from .data import DEFAULT_SINK_FACTOR
from .optim import OPTIMIZERS

EXPORT_FORMATS = ["saelens", "native"]


def _positive(name: str, value: int | float | None) -> None:
    if value is not None and not value > 0:
        raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")


@dataclass
class SaeTrainConfig:
    """``alignlab sae train``: train sparse autoencoders or transcoders at one or more sites."""

    site: str = opt(help="site(s) to read, e.g. resid.6, or 'resid.6,resid.12' (one coder each, "
                    "one forward pass)")
    out: str = opt(help="run folder; each coder is written to RUN/saes/<site>/")
    store: str | None = opt(None, "train from this activation store (alignlab harvest)")
    model: str | None = opt(None, "model to run on the fly (default: the embedded default); "
                            "with --store, the store's model")
    revision: str | None = opt(None, "hub revision, or checkpoint subfolder of a local folder")
    corpus: str = opt("builtin", "on the fly: 'builtin', a .txt/.jsonl/.parquet file or a datasets name")
    tokens: int | None = opt(None, "training tokens (on the fly: required; store: default all of it)")
    site_out: str | None = opt(None, "transcoders: the site(s) to predict, one per --site")
    skip: bool = opt(False, "transcoders: add a learned linear skip connection")
    arch: str = opt(DEFAULT_ARCH, "architecture", choices=architecture_names())
    k: int = opt(32, "topk/batchtopk: active latents per token")
    width: int | None = opt(None, "latents (default: --expansion x the site's width)")
    expansion: int = opt(16, "latents per input dimension when --width is not given")
    optimizer: str | None = opt(None, "signum (schedule-free sign descent, sparsify's default) or adam "
                                "(default: signum for topk/batchtopk, adam otherwise)",
                                choices=OPTIMIZERS)
    lr: float | None = opt(None, "learning rate (default, as sparsify: 5e-3 for signum, 2e-4 for adam, "
                           "over sqrt(width / 2^14))")
    l1_coeff: float = opt(5.0, "relu_l1: L1 coefficient (Anthropic's units)")
    l0_coeff: float = opt(1e-3, "jumprelu: L0 coefficient per active latent, in FVU units")
    batch_tokens: int = opt(4096, "tokens per optimiser step (all ranks together)")
    seq_len: int = opt(128, "on the fly: tokens per sequence (each starts with BOS)")
    epochs: int = opt(1, "store: passes over the store")
    eval_tokens: int = opt(16384, "held-out tokens for the final metrics (0: skip evaluation)")
    downstream: bool = opt(True, "measure next-token CE/KL with the coder spliced in")
    browse: bool = opt(True, "write feature browser pages")
    browse_tokens: int = opt(16384, "tokens the browser looks for top contexts in")
    sink_factor: float = opt(DEFAULT_SINK_FACTOR, "attention sinks: tokens whose norm exceeds this "
                             "times the median (0: off); position 0 always counts unless --include-sinks")
    include_sinks: bool = opt(False, "train and report on attention-sink tokens too")
    auxk: bool = opt(True, "AuxK revival of dead latents")
    dead_after_tokens: int | None = opt(None, "a latent silent this many tokens is dead (default: "
                                        "min(10M, a tenth of training))")
    checkpoint_every: int = opt(500, "steps between checkpoints in RUN/checkpoint (0: none)")
    resume: bool = opt(False, "continue from RUN/checkpoint if it exists")
    seed: int = opt(0, "initialisation and data order")
    dtype: str = opt("float32", "model dtype", choices=["float32", "bfloat16", "float16"])

    def __post_init__(self) -> None:
        if not self.site or not self.site.strip():
            raise ConfigError("--site must name at least one site, e.g. resid.6")
        if self.store is None and self.tokens is None:
            raise ConfigError("give --store STORE, or --tokens N to train on the fly from --model/--corpus")
        if self.store is not None and self.model is not None:
            raise ConfigError("--store and --model conflict: a store's activations come from its own model")
        if self.skip and self.site_out is None:
            raise ConfigError("--skip is for transcoders: give --site-out too")
        for name in ("tokens", "width", "expansion", "k", "batch_tokens", "seq_len", "epochs", "lr",
                     "browse_tokens", "dead_after_tokens"):
            _positive(name, getattr(self, name))
        if self.eval_tokens < 0 or self.checkpoint_every < 0 or self.sink_factor < 0:
            raise ConfigError("--eval-tokens, --checkpoint-every and --sink-factor must be >= 0")
        if self.seq_len < 2:
            raise ConfigError(f"--seq-len must be at least 2 (BOS and one token), got {self.seq_len}")


@dataclass
class SaeEvalConfig:
    """``alignlab sae eval``: reconstruction and downstream metrics of saved coders."""

    sae: str = opt(help="an SAE folder (alignlab, SAELens or sparsify) or a run folder with saes/",
                   positional=True)
    out: str = opt(help="run folder for config.json and metrics.json")
    model: str | None = opt(None, "model (default: the one the SAE records, else the embedded default)")
    revision: str | None = opt(None, "hub revision, or checkpoint subfolder of a local folder")
    corpus: str = opt("builtin", "'builtin', a .txt/.jsonl/.parquet file or a datasets name")
    tokens: int = opt(16384, "evaluation tokens")
    skip_tokens: int = opt(0, "tokens of the corpus to pass over first (to stay clear of training data)")
    seq_len: int = opt(128, "tokens per sequence (each starts with BOS)")
    batch_tokens: int = opt(4096, "tokens per forward pass")
    site: str | None = opt(None, "the site an imported SAE reads, when its folder does not say")
    downstream: bool = opt(True, "measure next-token CE/KL with the coder spliced in")
    sink_factor: float | None = opt(None, "sink norm factor (default: the SAE's own rule)")
    include_sinks: bool = opt(False, "count attention-sink tokens in the headline metrics")
    dtype: str = opt("float32", "model dtype", choices=["float32", "bfloat16", "float16"])

    def __post_init__(self) -> None:
        for name in ("tokens", "batch_tokens", "seq_len"):
            _positive(name, getattr(self, name))
        if self.skip_tokens < 0:
            raise ConfigError(f"--skip-tokens must be >= 0, got {self.skip_tokens}")
        if self.seq_len < 2:
            raise ConfigError(f"--seq-len must be at least 2, got {self.seq_len}")


@dataclass
class SaeExportConfig:
    """``alignlab sae export``: write an SAE folder in another format."""

    sae: str = opt(help="SAE folder to read (alignlab, SAELens or sparsify)", positional=True)
    out: str = opt(help="folder to write")
    format: str = opt("saelens", "format to write", choices=EXPORT_FORMATS)
    site: str | None = opt(None, "the site an imported SAE reads, when its folder does not say")


@dataclass
class SaeBrowseConfig:
    """``alignlab sae browse``: feature pages for every coder of a run (or one SAE folder)."""

    run: str = opt(help="a run folder from `alignlab sae train`, or one SAE folder", positional=True)
    model: str | None = opt(None, "model (default: the one the SAE records)")
    corpus: str | None = opt(None, "corpus (default: the one the SAE was trained on, else 'builtin')")
    tokens: int = opt(16384, "tokens to look for top-activating contexts in")
    seq_len: int = opt(128, "tokens per sequence")
    examples: int = opt(8, "contexts shown per latent")
    max_pages: int | None = opt(None, "write at most this many pages of 100 latents (default: all)")
    site: str | None = opt(None, "the site an imported SAE reads, when its folder does not say")

    def __post_init__(self) -> None:
        for name in ("tokens", "seq_len", "examples", "max_pages"):
            _positive(name, getattr(self, name))
