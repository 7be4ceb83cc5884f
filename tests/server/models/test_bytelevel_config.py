"""Config of byte-level models, ensembles and proxy-tuning: validated whole at start-up, with
messages that name the bad field."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from braid.server.models.config import load_settings
from braid.server.models.registry import ModelRegistry


def _load(tmp_path, models):
    path = tmp_path / "braid.json"
    path.write_text(json.dumps({"models": models}))
    return load_settings(path)


def test_a_valid_recipe_config_loads_with_defaults(tmp_path):
    settings = _load(tmp_path, [
        {"id": "a", "source": "a-folder"},
        {"id": "a-bytes", "kind": "bytelevel", "source": "a-folder", "min_token_prob": 1e-5},
        {"id": "duo", "kind": "ensemble", "members": [{"model": "a"}, {"source": "b-folder", "weight": 0.5}]},
        {"id": "px", "kind": "proxy", "base": {"model": "duo"}, "expert": {"model": "a-bytes"},
         "anti_expert": {"source": "c-folder"}},
    ])
    by_id = {m.id: m for m in settings.models}
    assert by_id["duo"].mode == "mix" and by_id["px"].alpha == 1.0
    assert {by_id[i].engine for i in ("a-bytes", "duo", "px")} == {"bytelevel"}
    assert by_id["a"].engine == "vllm"


def test_byte_level_speed_knobs_reach_every_source_of_a_recipe(tmp_path):
    from braid.server.engines.bytelevel.recipe import build_recipe, leaves

    settings = _load(tmp_path, [
        {"id": "a", "source": "a-folder"},
        {"id": "duo", "kind": "ensemble", "min_token_prob": 1e-3, "unchecked_tokens": "keep", "min_branch_share": 1e-4,
         "members": [{"model": "a"}, {"source": "b-folder"}]},
    ])
    by_id = {m.id: m for m in settings.models}
    options = [leaf.options for leaf in leaves(build_recipe(by_id["duo"], by_id, lambda source: source))]
    assert options == [{"min_token_prob": 1e-3, "max_branches": None, "unchecked": "keep", "min_branch_share": 1e-4}] * 2


@pytest.mark.parametrize("models, field", [
    ([{"id": "e", "kind": "ensemble", "members": [{"source": "x"}]}], "members"),
    ([{"id": "e", "kind": "ensemble", "members": [{"source": "x"}, {"model": "nope"}]}], "members[1].model"),
    ([{"id": "e", "kind": "ensemble", "members": [{"source": "x", "weight": -1}, {"source": "y"}]}],
     "members.0.weight"),
    ([{"id": "e", "kind": "ensemble", "members": [{"source": "x", "weight": 0}, {"source": "y", "weight": 0}]}],
     "weight must be > 0"),
    ([{"id": "e", "kind": "ensemble", "mode": "mean", "members": [{"source": "x"}, {"source": "y"}]}], "mode"),
    ([{"id": "e", "kind": "ensemble", "members": [{"source": "x", "model": "y"}, {"source": "y"}]}],
     "exactly one of `model`"),
    ([{"id": "p", "kind": "proxy", "base": {"source": "x"}, "expert": {"source": "y"}}], "anti_expert"),
    ([{"id": "p", "kind": "proxy", "base": {"source": "x"}, "expert": {"source": "y"},
       "anti_expert": {"source": "z"}, "alpha": "inf"}], "alpha"),
    ([{"id": "b", "kind": "bytelevel"}], "source"),
    ([{"id": "b", "kind": "bytelevel", "source": "x", "engine": "vllm"}], "engine"),
    ([{"id": "b", "kind": "bytelevel", "source": "x", "members": [{"source": "y"}, {"source": "z"}]}], "members"),
    ([{"id": "t", "source": "x", "min_token_prob": 0.1}], "min_token_prob"),
    ([{"id": "t", "source": "x", "min_branch_share": 0.1}], "min_branch_share"),
    ([{"id": "b", "kind": "bytelevel", "source": "x", "unchecked_tokens": "drop"}], "unchecked_tokens"),
    ([{"id": "b", "kind": "bytelevel", "source": "x", "min_branch_share": 1.0}], "min_branch_share"),
    ([{"id": "p", "kind": "proxy", "base": {"model": "e"}, "expert": {"source": "y"}, "anti_expert": {"source": "z"}},
      {"id": "e", "kind": "ensemble", "members": [{"model": "p"}, {"source": "y"}]}], "cycle: p -> e -> p"),
])
def test_bad_configs_name_the_field(tmp_path, models, field):
    with pytest.raises(ValidationError) as info:
        _load(tmp_path, models)
    assert field in str(info.value)


def test_braid_serve_refuses_a_bad_config_before_loading_anything(tmp_path):
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"models": [
        {"id": "duo", "kind": "ensemble", "members": [{"source": "x"}, {"model": "missing"}]}]}))
    result = subprocess.run([sys.executable, "-m", "braid.clients.cli", "serve", "--config", str(config)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "members[1].model: no model with id 'missing'" in result.stderr


async def test_a_source_that_cannot_be_loaded_stops_start_up_with_the_model_named(tmp_path, tiny_llama_dir):
    settings = _load(tmp_path, [
        {"id": "duo", "kind": "ensemble", "members": [{"source": str(tmp_path / "no-such-model")},
                                                      {"source": str(tiny_llama_dir)}]}])
    registry = ModelRegistry(settings)  # what the app's start-up runs
    with pytest.raises(RuntimeError, match="model 'duo': cannot load .*no-such-model.* for byte-level decoding"):
        await registry.start()
    await registry.shutdown()
