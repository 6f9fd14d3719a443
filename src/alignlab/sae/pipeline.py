"""What the ``alignlab sae`` verbs do, as library functions (the CLI only parses and prints).

``train_run``: data (a store, or the model on the fly) -> :class:`Trainer` -> coders saved in
``RUN/saes/<site>/`` -> held-out reconstruction and downstream metrics -> browser pages ->
``metrics.json`` (keys under ``sae.<site>.``; see the README). Under ``torchrun`` every rank
trains and rank 0 alone writes.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..activations.sites import expand_sites
from ..config import config_to_dict
from ..data import read_corpus, tokenize_corpus
from ..errors import ArtifactError, ConfigError
from ..models import EMBEDDED_DEFAULT, LoadedModel, load_model
from ..runs import Run, start_run
from . import distributed as dist_util
from . import report_section  # noqa: F401  (registers the `sae` report section)
from .arch import CoderConfig
from .browser import BrowserResult, collect_examples, write_browser
from .config import SaeBrowseConfig, SaeEvalConfig, SaeExportConfig, SaeTrainConfig
from .data import NO_SINKS, ActivationSource, ModelSource, SinkRule, SitePair
from .evaluate import downstream_metrics, evaluate_reconstruction
from .io import CoderMeta, LoadedCoder, check_model, export_saelens, load_coder, save_coder
from .store_source import StoreSource, open_store
from .trainer import CHECKPOINT_DIR, StepReport, Trainer, TrainResult, TrainSettings

SAES_DIR = "saes"
BROWSER_DIR = "browser"
Log = Callable[[str], None]


def resolve_pairs(sites: str, sites_out: str | None, n_layers: int) -> list[SitePair]:
    """``--site`` (and ``--site-out``) -> one :class:`SitePair` per coder."""
    inputs = [s.name for s in expand_sites(sites, n_layers)]
    if sites_out is None:
        return [SitePair(s, s) for s in inputs]
    outputs = [s.name for s in expand_sites(sites_out, n_layers)]
    if len(outputs) != len(inputs):
        raise ConfigError(
            f"--site gives {len(inputs)} site(s) ({', '.join(inputs)}) but --site-out gives "
            f"{len(outputs)} ({', '.join(outputs)}); give one output per input"
        )
    return [SitePair(i, o) for i, o in zip(inputs, outputs)]


def sink_rule(factor: float, include_sinks: bool) -> SinkRule:
    return NO_SINKS if include_sinks else SinkRule(first_position=True, norm_factor=factor)


@dataclass
class _Data:
    """Everything training and evaluation read."""

    source: ActivationSource
    pairs: list[SitePair]
    widths: dict[str, int]  # site -> width
    n_steps: int
    lm: LoadedModel | None  # for evaluation, downstream metrics and the browser
    model: dict  # LoadedModel.describe() of the model the activations come from
    held_out: Tensor | None  # (n, T) token rows never trained on
    seq_len: int
    corpus: str
    origin: dict = field(default_factory=dict)


# ----- train -----------------------------------------------------------------------------

def train_run(config: SaeTrainConfig, log: Log = print,
              on_step: Callable[[StepReport], None] | None = None) -> Run | None:
    """Train, save, evaluate and report; returns the run on rank 0 (None on other ranks)."""
    info = dist_util.init_from_env()
    run = start_run(config.out, "sae train", config_to_dict(config)) if info.is_main else None
    metrics = train_into(config, Path(config.out), log, on_step)
    if run is None:
        return None
    run.finish(metrics)
    return run


def train_into(config: SaeTrainConfig, out: Path, log: Log = print,
               on_step: Callable[[StepReport], None] | None = None,
               lm: LoadedModel | None = None) -> dict | None:
    """Train the coders of ``config`` into ``out/saes/`` and return their metrics (rank 0).

    ``lm`` reuses an already-loaded model for on-the-fly training (the demo does).
    """
    info = dist_util.init_from_env()
    data = _store_data(config, info) if config.store else _model_data(config, info, lm)
    configs = {p.name: _coder_config(config, p, data.widths) for p in data.pairs}
    dist_util.barrier()
    checkpoint = out / CHECKPOINT_DIR
    settings = TrainSettings(
        n_steps=data.n_steps, lr=config.lr, optimizer=config.optimizer,
        dead_after_tokens=config.dead_after_tokens,
        auxk=config.auxk, seed=config.seed, checkpoint_every=config.checkpoint_every,
        checkpoint_dir=checkpoint,
    )
    trainer = Trainer(configs, settings)
    if config.resume and trainer.load_checkpoint(checkpoint):
        log(f"resuming from {checkpoint} at step {trainer.step} of {data.n_steps}")
    log(f"training {len(configs)} coder(s) ({', '.join(configs)}) for {data.n_steps} steps "
        f"of {config.batch_tokens} tokens on {info.world} process(es)")
    result = trainer.fit(data.source, on_step)
    dist_util.barrier()
    if not info.is_main:
        return None
    metrics = _finish_training(config, data, result, out, log)
    shutil.rmtree(checkpoint, ignore_errors=True)
    return metrics


def _coder_config(config: SaeTrainConfig, pair: SitePair, widths: dict[str, int]) -> CoderConfig:
    d_in, d_out = widths[pair.input], widths[pair.output]
    return CoderConfig(
        config.arch, d_in, config.width or config.expansion * d_in,
        d_out=d_out if pair.is_transcoder else None, transcoder=pair.is_transcoder, skip=config.skip,
        k=config.k, l1_coeff=config.l1_coeff, l0_coeff=config.l0_coeff,
    )


def _rows_per_rank(batch_tokens: int, world: int, unit: int) -> int:
    per_rank = batch_tokens // world // unit
    if per_rank < 1:
        raise ConfigError(
            f"--batch-tokens {batch_tokens} over {world} rank(s) is less than one "
            f"{'sequence' if unit > 1 else 'row'} of {unit} tokens each; raise --batch-tokens"
        )
    return per_rank


def _model_data(config: SaeTrainConfig, info: dist_util.DistInfo, lm: LoadedModel | None = None) -> _Data:
    if lm is None:
        lm = load_model(config.model or EMBEDDED_DEFAULT, revision=config.revision, dtype=config.dtype)
    pairs = resolve_pairs(config.site, config.site_out, lm.n_layers)
    seq_len = config.seq_len
    n_train = math.ceil(config.tokens / seq_len)
    n_held = math.ceil(max(config.eval_tokens, config.browse_tokens if config.browse else 0) / seq_len)
    blocks = tokenize_corpus(read_corpus(config.corpus), lm.tokenizer, seq_len, (n_train + n_held) * seq_len)
    order = torch.randperm(n_train, generator=torch.Generator().manual_seed(config.seed))
    train = blocks.tokens[:n_train][order]  # shuffled sequence order, fixed by the seed
    batch_seqs = _rows_per_rank(config.batch_tokens, info.world, seq_len)
    source = ModelSource(lm, train, pairs, batch_seqs, sink_rule(config.sink_factor, config.include_sinks),
                         info.rank, info.world)
    widths = {s: lm.d_model for p in pairs for s in (p.input, p.output)}
    return _Data(source, pairs, widths, source.n_batches, lm, lm.describe(),
                 blocks.tokens[n_train:] if n_held else None, seq_len, config.corpus,
                 {"source": "model", "fingerprint": blocks.fingerprint})


def _store_data(config: SaeTrainConfig, info: dist_util.DistInfo) -> _Data:
    store = open_store(config.store)
    manifest = store.manifest
    pairs = resolve_pairs(config.site, config.site_out, int(manifest.model["n_layers"]))
    rows = _rows_per_rank(config.batch_tokens, info.world, 1)
    source = StoreSource(store, pairs, rows, config.seed, sink_rule(config.sink_factor, config.include_sinks),
                         config.epochs, info.rank, info.world)
    n_steps = source.n_batches
    if config.tokens is not None:
        n_steps = min(n_steps, math.ceil(config.tokens / config.batch_tokens))
    harvest = manifest.harvest
    needs_model = info.is_main and (config.eval_tokens > 0 or config.browse)
    lm = None
    held = None
    if needs_model:
        lm = load_model(manifest.model["model"], revision=manifest.model.get("revision"), dtype=config.dtype)
        _check_store_model(manifest.model, lm, config.store)
        held = _held_out_after_store(config, harvest, store.n_seq, lm)
    return _Data(source, pairs, dict(store.widths), n_steps, lm, dict(manifest.model), held,
                 int(harvest.get("seq_len", store.seq_len)), str(harvest.get("corpus")),
                 {"source": "store", "store": str(config.store)})


def _check_store_model(recorded: dict, lm: LoadedModel, store: str) -> None:
    expected = recorded.get("unembedding_hash")
    if expected and expected != lm.anatomy.unembedding_hash():
        raise ArtifactError(
            f"store {store} was harvested from {recorded.get('model')!r} but that name now loads a "
            "model with a different unembedding; evaluate with --eval-tokens 0 --no-browse, or re-harvest"
        )


def _held_out_after_store(config: SaeTrainConfig, harvest: dict, n_seq: int, lm: LoadedModel) -> Tensor | None:
    """Token rows of the store's corpus just past what the store holds: never trained on."""
    seq_len = int(harvest["seq_len"])
    n_held = math.ceil(max(config.eval_tokens, config.browse_tokens if config.browse else 0) / seq_len)
    if n_held == 0:
        return None
    blocks = tokenize_corpus(read_corpus(str(harvest["corpus"])), lm.tokenizer, seq_len,
                             (n_seq + n_held) * seq_len, bos=bool(harvest.get("bos", True)))
    return blocks.tokens[n_seq:]


def _finish_training(config: SaeTrainConfig, data: _Data, result: TrainResult, root: Path, log: Log) -> dict:
    sinks = sink_rule(config.sink_factor, config.include_sinks)
    per_coder = {}
    held_batches = _held_batches(data, sinks, config) if config.eval_tokens and data.lm else None
    for pair in data.pairs:
        folder = root / SAES_DIR / pair.folder_name
        meta = CoderMeta(
            site=pair.input, site_out=pair.output, model=data.model,
            input_scale=result.input_scale[pair.name], output_scale=result.output_scale[pair.name],
            sinks={"first_position": sinks.first_position, "norm_factor": sinks.norm_factor},
            training={"tokens": result.tokens, "steps": result.steps, "seq_len": data.seq_len,
                      "corpus": data.corpus, "seed": config.seed, **data.origin},
        )
        coder = result.coders[pair.name]
        save_coder(coder, folder, meta)
        entry = _training_entry(config, pair, coder.cfg, result, folder, root)
        if held_batches is not None:
            entry.update(_evaluate(data, pair, coder, held_batches, sinks, config, log))
        if config.browse and data.lm is not None and data.held_out is not None:
            browser = _browse(data.lm, LoadedCoder(coder, meta, folder, "alignlab"), data.held_out,
                              config.browse_tokens, sinks)
            entry["browser"] = str(browser.index.relative_to(root))
            log(f"{pair.name}: feature browser at {browser.index}")
        per_coder[pair.name] = entry
        log(f"{pair.name}: " + ", ".join(f"{k} {entry[k]:.4g}" for k in ("fvu", "l0", "dead_fraction",
                                                                       "loss_recovered") if k in entry))
    return {"sae": per_coder, "sae_train": _run_entry(data, result)}


def _training_entry(config, pair: SitePair, cfg: CoderConfig, result: TrainResult, folder: Path,
                    root: Path) -> dict:
    final = result.final.get(pair.name)
    return {
        "site": pair.input, "site_out": pair.output, "arch": cfg.arch, "width": cfg.width,
        "k": cfg.k if config.arch in ("topk", "batchtopk") else None,
        "transcoder": pair.is_transcoder, "skip": cfg.skip,
        "folder": str(folder.relative_to(root)),
        "train_fvu": final.fvu if final else None, "train_l0": final.l0 if final else None,
        "train_dead_fraction": final.dead_fraction if final else None,
        "input_scale": result.input_scale[pair.name],
    }


def _run_entry(data: _Data, result: TrainResult) -> dict:
    seconds = result.seconds
    return {
        "model": data.model.get("model"), "source": data.origin.get("source"),
        "tokens": result.tokens, "sink_tokens": result.sink_rows, "steps": result.steps,
        "seconds": seconds, "tokens_per_second": result.tokens / seconds if seconds > 0 else None,
        "update_seconds": result.update_seconds, "optimizers": result.optimizers,
        "update_tokens_per_second": result.tokens / result.update_seconds if result.update_seconds > 0 else None,
        "history": result.history,
    }


def _eval_rows(data: _Data, eval_tokens: int) -> Tensor:
    """The first held-out rows, ``eval_tokens`` worth (the browser may use more)."""
    seq_len = data.held_out.shape[1]
    return data.held_out[: math.ceil(eval_tokens / seq_len)]


def _held_batches(data: _Data, sinks: SinkRule, config: SaeTrainConfig) -> list[dict] | None:
    if data.held_out is None or data.lm is None:
        return None
    rows = _eval_rows(data, config.eval_tokens)
    seqs = min(max(1, config.batch_tokens // rows.shape[1]), rows.shape[0])
    return list(ModelSource(data.lm, rows, data.pairs, seqs, sinks).batches())


def _evaluate(data: _Data, pair: SitePair, coder, held: list[dict], sinks: SinkRule, config, log: Log) -> dict:
    out = evaluate_reconstruction(coder, [b[pair.name] for b in held]).to_json()
    if config.downstream:
        rows = _eval_rows(data, config.eval_tokens)
        seqs = max(1, config.batch_tokens // rows.shape[1])
        batches = [rows[i : i + seqs] for i in range(0, rows.shape[0], seqs)]
        out.update(downstream_metrics(data.lm, coder, pair, batches, sinks).to_json())
    return out


# ----- eval ------------------------------------------------------------------------------

def find_coders(path: str | Path) -> list[Path]:
    """An SAE folder itself, or every ``saes/*`` folder of a run."""
    path = Path(path)
    if (path / "cfg.json").is_file():
        return [path]
    found = sorted(p.parent for p in (path / SAES_DIR).glob("*/cfg.json"))
    if not found:
        raise ArtifactError(
            f"{path} is neither an SAE folder (no cfg.json) nor a run with {SAES_DIR}/*/cfg.json; "
            "give the folder `alignlab sae train --out` wrote, or one SAE inside it"
        )
    return found


def _model_for(loaded: list[LoadedCoder], model: str | None, revision: str | None, dtype: str) -> LoadedModel:
    recorded = next((c.meta.model for c in loaded if c.meta.model), None) or {}
    lm = load_model(model or recorded.get("model") or EMBEDDED_DEFAULT,
                    revision=revision or recorded.get("revision"), dtype=dtype)
    for coder in loaded:
        check_model(coder, lm)
    return lm


def _token_rows(corpus: str, lm: LoadedModel, seq_len: int, tokens: int, skip: int = 0) -> Tensor:
    n_skip, n_rows = math.ceil(skip / seq_len), math.ceil(tokens / seq_len)
    blocks = tokenize_corpus(read_corpus(corpus), lm.tokenizer, seq_len, (n_skip + n_rows) * seq_len)
    return blocks.tokens[n_skip:]


def eval_run(config: SaeEvalConfig, log: Log = print) -> Run:
    loaded = [load_coder(p, config.site) for p in find_coders(config.sae)]
    lm = _model_for(loaded, config.model, config.revision, config.dtype)
    rows = _token_rows(config.corpus, lm, config.seq_len, config.tokens, config.skip_tokens)
    run = start_run(config.out, "sae eval", config_to_dict(config))
    seqs = max(1, config.batch_tokens // config.seq_len)
    results = {}
    for item in loaded:
        pair = SitePair(item.meta.site, item.meta.site_out)
        rule = item.meta.sink_rule
        if config.sink_factor is not None:
            rule = SinkRule(rule.first_position, config.sink_factor)
        rule = NO_SINKS if config.include_sinks else rule
        source = ModelSource(lm, rows, [pair], min(seqs, rows.shape[0]), rule)
        entry = {"site": pair.input, "site_out": pair.output, "arch": item.coder.arch,
                 "width": item.coder.width, "folder": str(item.path), "format": item.source_format}
        entry.update(evaluate_reconstruction(item.coder, [b[pair.name] for b in source.batches()]).to_json())
        if config.downstream:
            batches = [rows[i : i + seqs] for i in range(0, rows.shape[0], seqs)]
            entry.update(downstream_metrics(lm, item.coder, pair, batches, rule).to_json())
        key = pair.name if pair.name not in results else f"{pair.name}#{len(results)}"
        results[key] = entry
        log(f"{key}: fvu {entry['fvu']:.4g}, l0 {entry['l0']:.4g}"
            + (f", loss recovered {entry['loss_recovered']:.4g}" if "loss_recovered" in entry else ""))
    run.finish({"sae": results})
    return run


# ----- export ----------------------------------------------------------------------------

def export_coder(config: SaeExportConfig) -> Path:
    loaded = load_coder(config.sae, config.site)
    if config.format == "saelens":
        return export_saelens(loaded, config.out)
    return save_coder(loaded.coder, config.out, loaded.meta)


# ----- browse ----------------------------------------------------------------------------

def _browse(lm: LoadedModel, loaded: LoadedCoder, rows: Tensor, tokens: int, sinks: SinkRule,
            n_examples: int = 8, max_pages: int | None = None) -> BrowserResult:
    rows = rows[: max(1, math.ceil(tokens / rows.shape[1]))]
    pair = SitePair(loaded.meta.site, loaded.meta.site_out)
    batches = [rows[i : i + 8] for i in range(0, rows.shape[0], 8)]
    examples = collect_examples(lm, loaded.coder, pair, batches, n_examples, sinks)
    title = f"{loaded.coder.arch} {pair.name} ({(loaded.meta.model or {}).get('model', lm.spec)})"
    return write_browser(lm, loaded.coder, examples, loaded.path / BROWSER_DIR, title, max_pages)


def browse_run(config: SaeBrowseConfig, log: Log = print) -> list[BrowserResult]:
    loaded = [load_coder(p, config.site) for p in find_coders(config.run)]
    lm = _model_for(loaded, config.model, None, "float32")
    recorded = next((c.meta.training.get("corpus") for c in loaded if c.meta.training.get("corpus")), None)
    corpus = config.corpus or recorded or "builtin"
    rows = _token_rows(corpus, lm, config.seq_len, config.tokens)
    results = []
    for item in loaded:
        result = _browse(lm, item, rows, config.tokens, item.meta.sink_rule, config.examples, config.max_pages)
        log(f"{item.meta.site}: {result.n_pages} page(s); open {result.index}")
        results.append(result)
    return results

