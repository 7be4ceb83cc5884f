from __future__ import annotations

from typer.testing import CliRunner

from braid.tools.cli import mcp_app

runner = CliRunner()


def test_list_names_every_server():
    result = runner.invoke(mcp_app, ["list"])
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.output.splitlines()] == ["memory", "search", "python", "calculator", "llm",
                                                                                 "agents"]


def test_serve_help_documents_the_options():
    result = runner.invoke(mcp_app, ["serve", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for option in ("--transport", "--host", "--port", "--store", "--base-url", "--api-key", "--timeout", "--memory-mb"):
        assert option in result.output


def test_missing_or_bad_options_fail_with_a_message(tmp_path):
    no_store = runner.invoke(mcp_app, ["serve", "memory"])
    assert no_store.exit_code == 2 and "needs --store" in no_store.output
    bad_collection = runner.invoke(mcp_app, ["serve", "search", "--store", str(tmp_path), "--embedder", "hashing",
                                             "--collection", "nope"])
    assert bad_collection.exit_code == 2 and "no collection 'nope'" in bad_collection.output
    assert runner.invoke(mcp_app, ["serve", "nosuch"]).exit_code == 2
    assert runner.invoke(mcp_app, ["serve", "calculator", "--transport", "carrier-pigeon"]).exit_code == 2
