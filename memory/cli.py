"""``braid index``: build and query a memory store from the command line.

The lead wires ``index_app`` into the main CLI (``app.add_typer(index_app, name="index")``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

__all__ = ["index_app"]

index_app = typer.Typer(
    name="index", no_args_is_help=True, add_completion=False,
    help="Index documents into a Braid memory store (SQLite + BM25 + faiss) and search it.")

StoreOpt = Annotated[Path, typer.Option("--store", "-s", help="Store directory (created if missing).")]
CollOpt = Annotated[str, typer.Option("--collection", "-c", help="Collection name.")]
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="sentence-transformers model id or folder; default: the bundled "
    "all-MiniLM-L6-v2 (offline). Use the same model for indexing and searching.")]


def _open(store: Path, model: str | None):
    from .embedders import SentenceTransformerEmbedder
    from .store import Store

    return Store.open(store, SentenceTransformerEmbedder(model) if model else None)


@index_app.command("add")
def add(
    paths: Annotated[list[Path], typer.Argument(
        help="JSONL/NDJSON or CSV files, text files, or folders (walked for .jsonl .ndjson "
             ".csv .txt .md .rst .text).", show_default=False)],
    store: StoreOpt = Path("braid-memory"),
    collection: CollOpt = "default",
    text_field: Annotated[str, typer.Option(help="JSONL/CSV field holding the text.")] = "text",
    id_field: Annotated[Optional[str], typer.Option(
        help="JSONL/CSV field holding a stable id; re-running then replaces, not duplicates.")] = None,
    chunk_words: Annotated[Optional[int], typer.Option(
        help="Split text files into chunks of this many words (one record each).", min=1)] = None,
    batch_size: Annotated[int, typer.Option(help="Records per embedding batch and transaction.",
                                            min=1)] = 256,
    model: ModelOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Add the records in PATHS to a collection.

    Each batch is committed on its own, so an interrupted run keeps what it finished.
    JSONL/CSV fields other than the text and id become metadata usable in search filters.
    """
    from .indexing import index_corpus

    with _open(store, model) as s:
        report = index_corpus(s, collection, paths, text_field=text_field, id_field=id_field,
                              chunk_words=chunk_words, batch_size=batch_size, progress=not quiet)
        total = s.collection(collection).count()
    typer.echo(f"{report.records} records from {report.files} files into {collection!r} "
               f"({report.skipped} skipped, {report.seconds:.1f} s); collection now holds {total}.")


@index_app.command("search")
def search(
    query: Annotated[str, typer.Argument(help="The query text.", show_default=False)],
    store: StoreOpt = Path("braid-memory"),
    collection: CollOpt = "default",
    k: Annotated[int, typer.Option("-k", help="Number of hits.", min=1)] = 10,
    mode: Annotated[str, typer.Option(help="hybrid (RRF of BM25 and dense), bm25 or dense.")] = "hybrid",
    filters: Annotated[Optional[str], typer.Option(
        "--filter", help='Metadata filter as JSON, e.g. \'{"lang": "en", "year": {"$gte": 2020}}\'.')] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per hit.")] = False,
    model: ModelOpt = None,
) -> None:
    """Search a collection and print the hits with their BM25 and dense scores."""
    with _open(store, model) as s:
        hits = s.collection(collection).search(query, k=k, mode=mode,
                                               filters=json.loads(filters) if filters else None)
    for h in hits:
        if as_json:
            typer.echo(json.dumps(h.__dict__, ensure_ascii=False))
        else:
            fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
            typer.echo(f"{h.rank:>3}. score={h.score:.4f} bm25={fmt(h.bm25_score)} "
                       f"dense={fmt(h.dense_score)} id={h.id}\n     {h.text[:160]!r}")


@index_app.command("stats")
def stats(store: StoreOpt = Path("braid-memory")) -> None:
    """List the collections of a store with their record counts."""
    from .store import Store

    with Store.open(store) as s:
        for name in s.collections():
            typer.echo(f"{name}\t{s.collection(name).count()}")


if __name__ == "__main__":
    index_app()
