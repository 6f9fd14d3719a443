"""``harvest``: run a model over a corpus and write chosen sites into an activation store.

Shard ``i`` holds sequences ``[i * S, (i + 1) * S)`` (S = shard_tokens // seq_len), and within a
shard the model runs on batches of ``batch_size`` sequences counted from the shard's start. Every
byte of a shard is therefore a function of (data, model, arguments) alone: a harvest killed at
any moment and run again redoes only unfinished shards and ends byte-identical to an
uninterrupted one, and under torchrun rank ``r`` writes shards ``i % world_size == r`` with the
same bytes a single process would.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..config import config_to_dict, opt
from ..data import TokenBlocks, read_corpus, tokenize_corpus
from ..errors import ConfigError, StoreError
from ..models import EMBEDDED_DEFAULT, LoadedModel, load_model
from ..runs import ensure_writable_dir
from .capture import capturing
from .distributed import RankGroup, raise_first
from .shards import SHARDS_DIR, TMP_SUFFIX, TORCH_DTYPES, sha256_file, shard_name, temp_name
from .sites import Site, expand_sites
from .stats import ShardStats
from .store import MANIFEST, STORE_DTYPES, ActivationStore, StoreManifest, sum_shard_stats
from .writer import ShardJob, ShardRecord, ShardWriter

# Seconds to sleep after each batch; only for tests that must kill a harvest mid-shard.
_DELAY_ENV = "ALIGNLAB_HARVEST_BATCH_DELAY"

Progress = Callable[[int, int], None]  # (tokens done, tokens in the store)


@dataclass
class HarvestConfig:
    """``alignlab harvest``: capture sites of a model over a corpus into an activation store."""

    out: str = opt(help="store folder; an existing store made with the same arguments is resumed")
    tokens: int = opt(help="tokens to harvest (rounded up to whole sequences)")
    model: str = opt(EMBEDDED_DEFAULT, "built-in name, hub id, local folder or .gguf file")
    revision: str | None = opt(None, "hub revision, or checkpoint subfolder of a local folder")
    corpus: str = opt("builtin", "'builtin', a .txt/.jsonl/.parquet file, or a datasets name")
    sites: str = opt("resid.*", "sites to capture, e.g. 'resid.*' or 'resid.3-6,mlp.2'")
    seq_len: int = opt(128, "tokens per sequence (each starts with BOS)")
    batch_size: int = opt(8, "sequences per forward pass")
    dtype: str = opt("float16", "dtype of the stored activations", choices=list(STORE_DTYPES))
    shard_tokens: int = opt(8192, "tokens per shard file (rounded down to whole sequences)")
    bos: bool = opt(True, "start every sequence with the BOS token")
    device: str | None = opt(None, "torch device (default: this rank's GPU if any, else cpu)")

    def __post_init__(self) -> None:
        if not str(self.out).strip():
            raise ConfigError("--out must name a folder for the store")
        if self.tokens < 1:
            raise ConfigError(f"--tokens must be at least 1, got {self.tokens}")
        if self.seq_len < (2 if self.bos else 1):
            raise ConfigError(
                f"--seq-len must be at least {2 if self.bos else 1}, got {self.seq_len}"
            )
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.dtype not in STORE_DTYPES:
            raise ConfigError(f"--dtype {self.dtype!r} is not one of {', '.join(STORE_DTYPES)}")
        if self.shard_tokens < self.seq_len:
            raise ConfigError(
                f"--shard-tokens ({self.shard_tokens}) must hold at least one sequence "
                f"(--seq-len {self.seq_len})"
            )


def harvest(
    config: HarvestConfig,
    lm: LoadedModel | None = None,
    progress: Progress | None = None,
    blocks: TokenBlocks | None = None,
) -> ActivationStore:
    """Write (or finish) the store ``config.out``.

    ``lm`` reuses an already-loaded model and ``blocks`` already-tokenized rows (they must be
    what ``config`` asks for: same corpus, seq_len, BOS and number of sequences). Under
    torchrun every rank calls this (without ``lm``); each writes its own shards and rank 0 the
    manifest.
    """
    group = RankGroup.from_env() if lm is None else RankGroup()
    try:
        return _harvest(config, lm, progress, blocks, group)
    finally:
        group.close()


def _harvest(
    config: HarvestConfig,
    lm: LoadedModel | None,
    progress: Progress | None,
    blocks: TokenBlocks | None,
    group: RankGroup,
) -> ActivationStore:
    out = ensure_writable_dir(Path(config.out))  # fail before the slow model load
    lm = (
        lm
        if lm is not None
        else load_model(config.model, config.revision, device=_device(config, group))
    )
    _check_model(config, lm)
    sites = expand_sites(config.sites, lm.n_layers)
    blocks = _check_blocks(config, blocks) if blocks is not None else _tokenize(config, lm)
    expected = plan_manifest(config, lm, sites, blocks)
    manifest = group.on_rank0(lambda: prepare_store(out, expected))
    todo = [
        i
        for i in range(manifest.n_shards)
        if i not in manifest.shards and i % group.world_size == group.rank
    ]
    done, error = _write_assigned(lm, manifest, blocks.tokens, todo, out, sites, group, progress)
    gathered = group.all_gather((done, error))
    records = [r for rank_records, _ in gathered for r in rank_records]
    group.on_rank0(lambda: finish_manifest(out, manifest, records))  # also every rank's barrier
    raise_first([e for _, e in gathered], group.rank)
    return ActivationStore.open(out)


def _tokenize(config: HarvestConfig, lm: LoadedModel) -> TokenBlocks:
    corpus = read_corpus(config.corpus)
    return tokenize_corpus(corpus, lm.tokenizer, config.seq_len, config.tokens, bos=config.bos)


def _check_blocks(config: HarvestConfig, blocks: TokenBlocks) -> TokenBlocks:
    n_seq = math.ceil(config.tokens / config.seq_len)
    given = (blocks.corpus_name, blocks.seq_len, blocks.n_seq, blocks.bos_id is not None)
    if given != (config.corpus, config.seq_len, n_seq, config.bos):
        raise ConfigError(
            f"the token rows given (corpus {given[0]!r}, seq_len {given[1]}, {given[2]} rows, "
            f"bos {given[3]}) are not what the config asks for (corpus {config.corpus!r}, seq_len "
            f"{config.seq_len}, {n_seq} rows, bos {config.bos})"
        )
    return blocks


def _device(config: HarvestConfig, group: RankGroup) -> str:
    if config.device:
        return config.device
    return f"cuda:{group.local_rank}" if torch.cuda.is_available() else "cpu"


def _check_model(config: HarvestConfig, lm: LoadedModel) -> None:
    if (lm.spec, lm.revision) != (config.model, config.revision):
        raise ConfigError(
            f"the loaded model is {lm.spec!r} (revision {lm.revision}) but the harvest config asks "
            f"for {config.model!r} (revision {config.revision}); make them agree"
        )


# --- planning and resuming ----------------------------------------------------------------


def plan_manifest(
    config: HarvestConfig, lm: LoadedModel, sites: list[Site], blocks: TokenBlocks
) -> StoreManifest:
    """The manifest this harvest will produce, with no shard finished yet."""
    args = config_to_dict(config)
    args.pop("out")
    args["device"] = lm.device.type  # numerics differ across device types, so it is an argument
    model = {
        **lm.describe(),
        "dtype": str(next(lm.model.parameters()).dtype).removeprefix("torch."),
    }
    data = {
        "corpus": blocks.corpus_name,
        "fingerprint": blocks.fingerprint,
        "bos_id": blocks.bos_id,
    }
    return StoreManifest(
        harvest=args,
        model=model,
        data=data,
        dtype=config.dtype,
        sites=list(zip([s.name for s in sites], site_widths(lm, sites))),
        seq_len=blocks.seq_len,
        n_seq=blocks.n_seq,
        seqs_per_shard=config.shard_tokens // config.seq_len,
    )


def site_widths(lm: LoadedModel, sites: list[Site]) -> list[int]:
    """Every site kind is a vector in the residual stream's space (block outputs, attention and
    MLP outputs, the MLP's normalised input), so each is ``d_model`` wide; the first batch
    checks it (:func:`capture_batch`)."""
    return [lm.d_model for _ in sites]


def argument_differences(existing: StoreManifest, expected: StoreManifest) -> list[str]:
    """What differs between the store on disk and this harvest, in the user's terms."""
    diffs = []
    old, new = _comparable(existing), _comparable(expected)
    for key, (value, shown) in new.items():
        if old[key][0] != value:
            diffs.append(f"{key} {old[key][1]} (store) vs {shown} (now)")
    return diffs


def _comparable(m: StoreManifest) -> dict[str, tuple[object, object]]:
    """flag -> (value compared, value shown)."""
    h = m.harvest
    return {
        "--model": (h["model"], h["model"]),
        "--revision": (h["revision"], h["revision"]),
        "--corpus": (h["corpus"], h["corpus"]),
        "--tokens": (m.n_seq, h["tokens"]),
        "--seq-len": (m.seq_len, m.seq_len),
        "--sites": (m.site_names, h["sites"]),
        "--batch-size": (h["batch_size"], h["batch_size"]),
        "--dtype": (m.dtype, m.dtype),
        "--shard-tokens": (m.seqs_per_shard, h["shard_tokens"]),
        "--bos": (h["bos"], h["bos"]),
        "device type": (h["device"], h["device"]),
        "model weights (unembedding hash)": (
            m.model["unembedding_hash"],
            m.model["unembedding_hash"][:12],
        ),
        "model dtype": (m.model["dtype"], m.model["dtype"]),
        "corpus text or tokenizer (data fingerprint)": (
            m.data["fingerprint"],
            m.data["fingerprint"][:12],
        ),
    }


def prepare_store(out: Path, expected: StoreManifest) -> StoreManifest:
    """Start a new store, or check an existing one matches and find what it already holds."""
    if (out / MANIFEST).exists():
        existing = StoreManifest.load(out)
        diffs = argument_differences(existing, expected)
        if diffs:
            raise StoreError(
                f"store {str(out)!r} was harvested with other arguments: {'; '.join(diffs)}. "
                "Repeat the store's arguments to resume it, or give another --out"
            )
        expected.shards, expected.complete, expected.stats = (
            existing.shards,
            existing.complete,
            existing.stats,
        )
    else:
        _check_not_other_data(out)
    (out / SHARDS_DIR).mkdir(exist_ok=True)
    _remove_temp_files(out)
    changed = _forget_missing(out, expected) | _adopt_finished(out, expected)
    if changed:
        expected.complete, expected.stats = False, None
    if changed or not (out / MANIFEST).exists():
        expected.save(out)
    return expected


def _check_not_other_data(out: Path) -> None:
    entries = [p.name for p in out.iterdir() if not p.name.startswith(".write-test-")]
    shards = out / SHARDS_DIR
    if entries and entries != [SHARDS_DIR] or (shards.is_dir() and any(shards.iterdir())):
        raise StoreError(
            f"folder {str(out)!r} is not empty and has no {MANIFEST}, so it is not an activation "
            f"store (found: {', '.join(sorted(entries)[:5])}); give a new or empty folder as --out"
        )


def _remove_temp_files(out: Path) -> None:
    """Unfinished shards from an interrupted run: their final names were never given."""
    for path in (out / SHARDS_DIR).glob(f".*{TMP_SUFFIX}"):
        path.unlink(missing_ok=True)


def _forget_missing(out: Path, manifest: StoreManifest) -> bool:
    """Drop finished-shard records whose file is gone or has the wrong size (redone)."""
    gone = [
        i
        for i, r in manifest.shards.items()
        if not (out / r.file).is_file() or (out / r.file).stat().st_size != r.bytes
    ]
    for index in gone:
        del manifest.shards[index]
    return bool(gone)


_SHARD_FILE = re.compile(r"shard-(\d+)\.safetensors")


def _adopt_finished(out: Path, manifest: StoreManifest) -> bool:
    """Record shards that were finished (renamed) but not yet listed in the manifest.

    That happens when a run is killed between a shard's rename and the manifest update, and
    for every rank but 0 in a killed distributed run. A finished name guarantees a complete
    file; its header must still be exactly the one this harvest would write.
    """
    adopted = False
    for path in sorted((out / SHARDS_DIR).glob("shard-*.safetensors")):
        match = _SHARD_FILE.fullmatch(path.name)
        index = int(match.group(1)) if match else -1
        if (
            index in manifest.shards
            or not 0 <= index < manifest.n_shards
            or path.name != Path(shard_name(index)).name
        ):
            continue
        layout = manifest.layout(index)
        with open(path, "rb") as handle:
            header = handle.read(len(layout.header))
        if header != layout.header or path.stat().st_size != layout.total_bytes:
            raise StoreError(
                f"{path} is not a shard of this harvest (its header or size differs); "
                "delete it and run the same command again"
            )
        first, n_seq = manifest.shard_range(index)
        manifest.shards[index] = ShardRecord(
            index,
            shard_name(index),
            first,
            n_seq,
            n_seq * manifest.seq_len,
            layout.total_bytes,
            sha256_file(path),
        )
        adopted = True
    return adopted


def finish_manifest(out: Path, manifest: StoreManifest, records: list[ShardRecord]) -> None:
    """Record every finished shard; once all are there, add statistics and mark complete."""
    for record in records:
        manifest.shards[record.index] = record
    if len(manifest.shards) == manifest.n_shards and not manifest.complete:
        manifest.stats = {s: st.to_json() for s, st in sum_shard_stats(out, manifest).items()}
        manifest.complete = True
    manifest.save(out)


# --- writing --------------------------------------------------------------------------------


def _write_assigned(
    lm: LoadedModel,
    manifest: StoreManifest,
    tokens: Tensor,
    todo: list[int],
    out: Path,
    sites: list[Site],
    group: RankGroup,
    progress: Progress | None,
) -> tuple[list[ShardRecord], StoreError | None]:
    """Write this rank's shards; a write error is returned so every rank can hear of it."""
    done: list[ShardRecord] = []

    def on_done(record: ShardRecord) -> None:
        done.append(record)
        if group.rank == 0:  # the manifest has one writer; other ranks' shards are adopted
            manifest.shards[record.index] = record
            manifest.save(out)

    counter = _ProgressCounter(manifest, progress, group)
    try:
        write_shards(lm, manifest, tokens, todo, out, sites, on_done, counter.advance)
    except StoreError as exc:
        return done, exc
    return done, None


class _ProgressCounter:
    """Tokens done across finished shards and this rank's batches."""

    def __init__(self, manifest: StoreManifest, progress: Progress | None, group: RankGroup):
        self.total = manifest.n_tokens
        self.done = sum(r.n_rows for r in manifest.shards.values())
        self.progress = progress if group.rank == 0 else None
        self.scale = group.world_size  # rank 0 sees its own share; extrapolate for the bar
        if self.progress:
            self.progress(self.done, self.total)

    def advance(self, n_tokens: int) -> None:
        self.done += n_tokens * self.scale
        if self.progress:
            self.progress(min(self.done, self.total), self.total)


def write_shards(
    lm: LoadedModel,
    manifest: StoreManifest,
    tokens: Tensor,
    todo: list[int],
    out: Path,
    sites: list[Site],
    on_done: Callable[[ShardRecord], None],
    advance: Callable[[int], None],
) -> None:
    """Run the model over the sequences of shards ``todo`` and write each shard."""
    writer = ShardWriter(on_done)
    try:
        for index in todo:
            _write_shard(lm, manifest, tokens, index, out, sites, writer, advance)
        writer.close()
    except BaseException:
        writer.abandon()
        raise


def _write_shard(
    lm: LoadedModel,
    manifest: StoreManifest,
    tokens: Tensor,
    index: int,
    out: Path,
    sites: list[Site],
    writer: ShardWriter,
    advance: Callable[[int], None],
) -> None:
    first, n_seq = manifest.shard_range(index)
    end, seq_len = first + n_seq, manifest.seq_len
    writer.begin(
        ShardJob(
            out,
            index,
            shard_name(index),
            temp_name(index),
            manifest.layout(index),
            first,
            n_seq,
            n_seq * seq_len,
        )
    )
    stats = ShardStats(manifest.site_names, lm.d_model, lm.device)
    batch_size = manifest.harvest["batch_size"]
    delay = float(os.environ.get(_DELAY_ENV, "0") or 0)
    for start in range(first, end, batch_size):
        ids = tokens[start : min(start + batch_size, end)]  # (B, T)
        acts = capture_batch(lm, ids, sites, stats, manifest.dtype)
        writer.write((start - first) * seq_len, acts)
        advance(ids.numel())
        if delay:
            time.sleep(delay)
    writer.end(
        {
            "tokens": tokens[first:end].contiguous(),
            "seq_index": torch.arange(first, end, dtype=torch.int64),
            **stats.tensors(),
        }
    )


@torch.inference_mode()
def capture_batch(
    lm: LoadedModel, ids: Tensor, sites: list[Site], stats: ShardStats, dtype: str
) -> dict[str, Tensor]:
    """One forward pass (stopped after the deepest site): each site as (B*T, d) on the CPU.

    Every site is copied, in the store dtype, into one (S, B, T, d) buffer as the hooks see it,
    so statistics take a few large ops per batch and the CPU gets one transfer.
    """
    slot = {site.name: i for i, site in enumerate(sites)}
    buffer = torch.empty(
        len(sites), *ids.shape, lm.d_model, dtype=TORCH_DTYPES[dtype], device=lm.device
    )  # (S, B, T, d)

    def keep(name: str, x: Tensor) -> Tensor:  # x: (B, T, d) as the model made it
        if x.shape[-1] != lm.d_model:
            raise StoreError(
                f"site {name} is {x.shape[-1]} wide, not d_model ({lm.d_model}); the store "
                "holds residual-stream-sized sites only"
            )
        return buffer[slot[name]].copy_(x)

    with capturing(lm, sites, early_exit=True, transform=keep) as captured:
        lm.model(input_ids=ids.to(lm.device), use_cache=False)
    missing = [s.name for s in sites if s.name not in captured.acts]
    if missing:
        raise StoreError(f"the forward pass never reached site(s) {', '.join(missing)}")
    stats.add(buffer)
    rows = buffer.to("cpu").flatten(1, 2)  # (S, B*T, d)
    return {site.name: rows[i] for i, site in enumerate(sites)}


# --- demo -----------------------------------------------------------------------------------


def demo_section(ctx) -> dict:
    """The demo's harvest: a small store of every residual site from the loaded model.

    Returns ``{"harvest": {...}}`` with the store's size, per-layer residual norms (with and
    without position 0) and throughput.
    """
    quick = ctx.config.quick
    config = HarvestConfig(
        out=str(Path(ctx.run.path) / "store"),
        tokens=4096 if quick else 8192,
        model=ctx.lm.spec,
        revision=ctx.lm.revision,
        sites="resid.*",
        shard_tokens=4096 if quick else 8192,
    )
    started = time.perf_counter()
    store = harvest(config, lm=ctx.lm)
    seconds = time.perf_counter() - started
    stats = [store.stats(site) for site in store.sites]
    ctx.log(f"harvest: {store.n_rows} tokens x {len(store.sites)} sites in {seconds:.1f}s")
    return {
        "harvest": {
            "store": str(store.path),
            "tokens": store.n_rows,
            "sites": store.sites,
            "dtype": store.dtype,
            "shards": store.manifest.n_shards,
            "bytes": sum(r.bytes for r in store.manifest.shards.values()),
            "resid_norm_mean": [s.mean_norm for s in stats],
            "resid_norm_mean_excl_first": [s.mean_norm_excl_first for s in stats],
            "resid_var_mean": [s.mean_var for s in stats],
            "seconds": seconds,
            "tokens_per_second": store.n_rows / seconds,
        }
    }
