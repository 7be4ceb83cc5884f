"""Corpus indexing from JSONL, CSV and text folders, and the ``braid index`` CLI help."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from braid.memory import index_corpus
from braid.memory.cli import index_app


def test_index_jsonl_csv_and_text_folder(tmp_path, store):
    corpus = tmp_path / "corpus"
    (corpus / "notes").mkdir(parents=True)
    (corpus / "a.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"doc_id": "j1", "body": "faiss flat search is exact", "lang": "en"},
        {"doc_id": "j2", "body": "bm25 needs no training", "lang": "en"},
        {"doc_id": "j3", "lang": "en"}]) + "\n")              # no text: skipped
    (corpus / "b.csv").write_text("doc_id,body,lang\nc1,sqlite keeps the records,de\n")
    (corpus / "notes" / "long.md").write_text(" ".join(f"word{i}" for i in range(25)))
    report = index_corpus(store, "docs", [corpus], text_field="body", id_field="doc_id",
                          chunk_words=10, batch_size=2, progress=False)
    assert (report.records, report.files, report.skipped) == (6, 3, 1)
    coll = store.collection("docs")
    assert coll.count() == 6 and coll.get("j2").metadata["lang"] == "en"
    assert coll.get("notes/long.md#2").text == "word20 word21 word22 word23 word24"
    assert [h.id for h in coll.search("records", mode="bm25", filters={"lang": "de"})] == ["c1"]
    index_corpus(store, "docs", [corpus], text_field="body", id_field="doc_id",
                 chunk_words=10, progress=False)
    assert coll.count() == 6                                  # ids make re-indexing idempotent


def test_cli_help():
    result = CliRunner().invoke(index_app, ["add", "--help"])
    assert result.exit_code == 0 and "--text-field" in result.output
