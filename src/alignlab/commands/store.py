"""``harvest``, ``store info`` and ``store verify``."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from ..activations.harvest import HarvestConfig
from ..config import opt
from ..errors import StoreError
from .registry import command


@dataclass
class StoreConfig:
    """``alignlab store info|verify STORE``."""

    store: str = opt(
        help="an activation store folder (made by `alignlab harvest`)", positional=True
    )


@command(
    "harvest", "capture sites of a model over a corpus into an activation store", HarvestConfig
)
def run_harvest(config: HarvestConfig, console: Console) -> int:
    from ..activations.distributed import RankGroup
    from ..activations.harvest import harvest

    rank = RankGroup.from_env()  # joins the process group under torchrun; harvest reuses it
    try:
        started = time.perf_counter()
        with _progress_bar(show=rank.rank == 0 and sys.stderr.isatty()) as progress:
            store = harvest(config, progress=progress)
        seconds = time.perf_counter() - started
    finally:
        rank.close()
    if rank.rank == 0:
        m = store.manifest
        size = sum(r.bytes for r in m.shards.values())
        console.print(
            f"store {store.path}: {m.n_tokens} tokens x {len(m.sites)} sites ({m.dtype}), "
            f"{m.n_shards} shards, {size / 1e6:.1f} MB; {seconds:.1f}s",
            soft_wrap=True,
        )
    return 0


@contextmanager
def _progress_bar(show: bool):
    """A rich progress bar on a terminal; nothing (None) when stderr is a pipe or a file."""
    if not show:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("harvest (tokens)", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


@command("store info", "what an activation store holds, with per-site statistics", StoreConfig)
def run_store_info(config: StoreConfig, console: Console) -> int:
    from ..activations.store import ActivationStore

    store = ActivationStore.open(config.store, allow_incomplete=True)
    console.print(_summary_table(store))
    console.print(_stats_table(store))
    return 0


def _summary_table(store) -> Table:
    m = store.manifest
    table = Table(title=f"activation store {store.path}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    size = sum(r.bytes for r in m.shards.values())
    revision = f" @ {m.model.get('revision')}" if m.model.get("revision") else ""
    rows = [
        (
            "model",
            f"{m.model.get('model')}{revision} "
            f"({m.model.get('family')}, {m.model.get('n_layers')} blocks)",
        ),
        ("unembedding hash", str(m.model.get("unembedding_hash"))[:16]),
        ("corpus", f"{m.data.get('corpus')} (fingerprint {str(m.data.get('fingerprint'))[:16]})"),
        ("tokens", f"{m.n_tokens} ({m.n_seq} sequences x {m.seq_len})"),
        ("sites", ", ".join(m.site_names)),
        ("widths", _widths(m.sites)),
        ("dtype", m.dtype),
        ("shards", f"{len(m.shards)} of {m.n_shards} finished, {size / 1e6:.1f} MB"),
        ("complete", "yes" if m.complete else "no: run the same harvest command again to finish"),
        ("alignlab", m.alignlab_version),
    ]
    for field, value in rows:
        table.add_row(field, value)
    return table


def _widths(sites: list[tuple[str, int]]) -> str:
    widths = sorted({w for _, w in sites})
    return ", ".join(map(str, widths)) if len(widths) > 1 else f"{widths[0]} (every site)"


def _stats_table(store) -> Table:
    table = Table(
        title="per-site statistics (excl. pos 0: without the first position of each sequence)"
    )
    for column in ("site", "mean norm", "excl. pos 0", "mean var", "excl. pos 0", "|mean|"):
        table.add_column(column, justify="right" if column != "site" else "left")
    if not store.manifest.shards:
        return table
    for site in store.sites:
        s = store.stats(site)
        excl_var = None if s.var_excl_first is None else float(s.var_excl_first.mean())
        table.add_row(
            site,
            f"{s.mean_norm:.3g}",
            _fmt(s.mean_norm_excl_first),
            f"{s.mean_var:.3g}",
            _fmt(excl_var),
            f"{float(s.mean.norm()):.3g}",
        )
    return table


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


@command(
    "store verify", "check every shard of an activation store against its manifest", StoreConfig
)
def run_store_verify(config: StoreConfig, console: Console) -> int:
    from ..activations.store import verify_store

    report = verify_store(config.store)
    if not report.ok:
        raise StoreError(
            f"store {config.store} is damaged or incomplete: {'; '.join(report.problems)}"
        )
    console.print(
        f"OK: {config.store}: {report.n_shards} shards, {report.n_tokens} tokens, "
        f"{report.n_bytes / 1e6:.1f} MB, every sha256 matches the manifest",
        soft_wrap=True,
    )
    return 0
