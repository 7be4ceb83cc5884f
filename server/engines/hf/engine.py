"""``HFEngine``: continuous batching of transformers models over a slot KV cache.

A worker thread runs schedule -> model forward -> sample -> deliver, so the event loop stays
responsive during forward passes. Requests and aborts reach it through a thread-safe inbox;
outputs come back through each request's asyncio queue.

Decoding methods (``capabilities``): contrastive ICD and ASCD (a request becomes a pair of
sequences scheduled as one unit) and span steering (per-sequence attention score modifiers);
see ``methods.py``. ``"auto"`` steering heads are profiled once per model (``head_profile.py``).
LLaVA-style vision-language models also take images (``IMAGES``) and run VCD (``vision.py``
merges image features into prefills); ASCD and steering on an image prompt steer its image tokens.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
from typing import AsyncIterator

import torch

from ...plans import Capability, DecodingPlan, Refusal
from ...sampling import SamplingSpec
from ...decoding.grammar import GrammarCompilerCache
from ..base import Engine, EngineError, EngineOutput, EngineRequest, EngineStats, EngineUnavailable
from . import attention
from ...kernels.cpu_linear import install_small_batch_linears
from .head_profile import HeadProfile
from .kv_cache import SlotKVCache
from .methods import attach_methods, method_refusal, validate_positions
from .model_runner import ModelRunner
from .scheduler import Scheduler, Sequence
from .step import run_step
from .vision import ImageMerger, is_multimodal

__all__ = ["HFEngine"]

log = logging.getLogger(__name__)

_CPU_KV_BYTES = 1 << 30
_GPU_KV_FRACTION = 0.4
_KNOWN_OPTIONS = {"kv_cache_memory_bytes", "max_num_batched_tokens", "small_batch_linear"}


class HFEngine(Engine):
    capabilities: frozenset[Capability] = frozenset({Capability.ICD, Capability.ASCD, Capability.STEER,
                                                     Capability.STRUCTURED})

    def __init__(self, name: str, model_path: str, *, max_model_len: int | None = None, dtype: str = "auto",
                 max_num_seqs: int = 32, device: str | None = None, disable_any_whitespace: bool = False,
                 **engine_options):
        from transformers import AutoConfig, AutoTokenizer

        unknown = set(engine_options) - _KNOWN_OPTIONS
        if unknown:
            raise ValueError(f"unknown transformers engine_options {sorted(unknown)}; known: {sorted(_KNOWN_OPTIONS)}")
        self.name = name
        self.model_path = model_path
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = dtype
        self.max_num_seqs = max_num_seqs
        self.options = engine_options
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.config = AutoConfig.from_pretrained(model_path)
        text_config = self.config.get_text_config()
        self.multimodal = is_multimodal(self.config)
        self.processor = None
        if self.multimodal:
            from transformers import AutoProcessor

            self.processor = AutoProcessor.from_pretrained(model_path)
            self.capabilities = self.capabilities | {Capability.VCD, Capability.IMAGES}
        self.vocab_size = text_config.vocab_size
        model_limit = getattr(text_config, "max_position_embeddings", None) or max_model_len or 2048
        if max_model_len is not None and max_model_len > model_limit:
            log.warning("%s: max_model_len %d capped at the model's %d", name, max_model_len, model_limit)
        self.max_model_len = min(max_model_len or model_limit, model_limit)
        self._inbox: queue.Queue = queue.Queue()
        self._outboxes: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._thread: threading.Thread | None = None
        self.scheduler: Scheduler | None = None
        self.runner: ModelRunner | None = None
        self.num_layers, self.num_heads = text_config.num_hidden_layers, text_config.num_attention_heads
        self._head_profile: HeadProfile | None = None
        self._grammars: GrammarCompilerCache | None = None
        self._disable_any_whitespace = disable_any_whitespace
        self._failure: str | None = None
        self._grammar_stop_ids = _eos_ids(self.tokenizer, model_path)

    async def start(self) -> None:
        if self._thread is not None:
            return
        await asyncio.to_thread(self._load)
        self._thread = threading.Thread(target=self._loop, name=f"braid-hf-{self.name}", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

        torch_dtype = self._torch_dtype()
        if self.multimodal:  # slot attention in the language model only; the vision tower keeps its own
            auto, attn = AutoModelForImageTextToText, {"text_config": attention.register()}
        else:
            auto, attn = AutoModelForCausalLM, attention.register()
        model = auto.from_pretrained(self.model_path, dtype=torch_dtype, attn_implementation=attn)
        model = model.to(self.device).eval()
        if self.options.get("small_batch_linear", True):
            count = install_small_batch_linears(model)
            if count:
                log.info("%s: %d CPU float32 linear layers use the small-batch product (engine option "
                         "small_batch_linear: false turns it off)", self.name, count)
        cfg = model.config.get_text_config()
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        cache = SlotKVCache(
            cfg.num_hidden_layers, getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads, head_dim,
            dtype=next(model.parameters()).dtype, device=self.device, max_len=self.max_model_len,
            memory_bytes=self._kv_budget(),
        )
        self.runner = ModelRunner(model, cache, ImageMerger(model) if self.multimodal else None)
        self._grammars = GrammarCompilerCache(self.tokenizer, self.vocab_size,
                                              disable_any_whitespace=self._disable_any_whitespace)
        self.scheduler = Scheduler(
            self.max_num_seqs,
            int(self.options.get("max_num_batched_tokens") or max(self.max_model_len, 2048)),
            cache.max_tokens,
        )

    def _torch_dtype(self):
        if self.dtype != "auto":
            return getattr(torch, self.dtype)
        return torch.float32 if self.device.type == "cpu" else "auto"

    def _kv_budget(self) -> int:
        if self.options.get("kv_cache_memory_bytes"):
            return int(self.options["kv_cache_memory_bytes"])
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return int(free * _GPU_KV_FRACTION)
        return _CPU_KV_BYTES

    async def shutdown(self) -> None:
        if self._thread is None:
            return
        self._inbox.put(("stop", None))
        await asyncio.to_thread(self._thread.join)
        self._thread = None
        self.runner = None
        for request_id in list(self._outboxes):
            self._deliver(request_id, EngineUnavailable(f"engine {self.name!r} shut down"))
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def failure(self) -> str | None:
        return self._failure

    def stats(self) -> EngineStats:
        running = len(self.scheduler.running) if self.scheduler is not None else 0
        # Requests still in the inbox count as waiting: the serving layer's queue limit relies on it.
        return EngineStats(running=running, waiting=max(0, len(self._outboxes) - running))

    async def generate(self, request: EngineRequest) -> AsyncIterator[EngineOutput]:
        self._validate(request)
        if self._thread is None:
            raise EngineError(f"engine {self.name!r} is not started")
        if self._failure is not None:
            raise EngineUnavailable(f"model {self.name!r}: {self._failure}")
        outbox: asyncio.Queue = asyncio.Queue()
        self._outboxes[request.request_id] = (asyncio.get_running_loop(), outbox)
        prompt = list(request.prompt_token_ids)
        seq = Sequence(request.request_id, prompt, len(prompt), request.sampling)
        structured = request.sampling.plan.structured
        if structured is not None:  # compiling a large schema takes a while: not on the engine thread
            stops = self._grammar_stop_ids | set(request.sampling.stop_token_ids)
            seq.constraint = await asyncio.to_thread(self._grammars.constraint, structured, stops)
        self._inbox.put(("add", seq))
        finished = False
        try:
            while not finished:
                item = await outbox.get()
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                finished = item.finish_reason is not None
                yield item
        finally:
            self._outboxes.pop(request.request_id, None)
            if not finished:
                self._inbox.put(("abort", request.request_id))

    def supports(self, plan: DecodingPlan) -> Refusal | None:
        return super().supports(plan) or method_refusal(plan, self.name, self.max_num_seqs, self.vocab_size,
                                                        self.max_model_len, self.num_layers, self.num_heads)

    def validate(self, sampling: SamplingSpec) -> None:
        super().validate(sampling)
        vocab = self.vocab_size
        if sampling.max_tokens < 1:
            raise EngineError("max_tokens must be at least 1")
        for field_name in ("logprobs", "prompt_logprobs"):
            k = getattr(sampling, field_name)
            if k is not None and not 0 <= k <= vocab:
                raise EngineError(f"{field_name} must be between 0 and {vocab}, got {k}")

    def _validate(self, request: EngineRequest) -> None:
        self.validate(request.sampling)
        n, vocab = len(request.prompt_token_ids), self.vocab_size
        if request.request_id in self._outboxes:
            raise EngineError(f"request id {request.request_id!r} is already running")
        if n == 0:
            raise EngineError("the prompt is empty")
        if n >= self.max_model_len:
            raise EngineError(f"the prompt has {n} tokens; this model's context is {self.max_model_len}")
        if any(t < 0 or t >= vocab for t in request.prompt_token_ids):
            raise EngineError(f"prompt token ids must be in [0, {vocab})")
        validate_positions(request.sampling.plan, n)

    def _loop(self) -> None:
        try:
            self._run_loop()
        except Exception as exc:  # noqa: BLE001 - the worker is dead: say why, fail every request, stop
            log.exception("%s: the engine's worker failed", self.name)
            self._failure = f"the engine step failed: {type(exc).__name__}: {exc}"
            for request_id in list(self._outboxes):
                self._deliver(request_id, EngineUnavailable(f"model {self.name!r}: {self._failure}"))

    def _run_loop(self) -> None:
        """Schedule, run, deliver until asked to stop. An exception in a step escapes: the batch's
        KV slots and the scheduler's state can no longer be trusted, so the engine is replaced (as
        vLLM's engine core dies on one)."""
        sched = self.scheduler
        while True:
            if not self._drain_inbox(block=not sched.has_work()):
                return
            batch = sched.schedule()
            if batch is None:
                continue
            for request_id, item in run_step(self.runner, sched, batch, self.max_model_len):
                self._deliver(request_id, item)

    def _drain_inbox(self, block: bool) -> bool:
        """Apply queued adds and aborts; False once asked to stop."""
        try:
            item = self._inbox.get(block=block)
        except queue.Empty:
            return True
        while True:
            kind, payload = item
            if kind == "stop":
                return False
            if kind == "add":
                self._add(payload)
            elif kind == "abort":
                self.scheduler.abort(payload)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return True

    def _add(self, seq: Sequence) -> None:
        """Worker thread: set up the sequence's generator and decoding methods, then queue it."""
        if seq.sampling.seed is not None:
            gen = torch.Generator(device=self.device)
            gen.manual_seed(seq.sampling.seed)
            seq.generator = gen
        try:
            attach_methods(seq, self.num_layers, self.num_heads, self._auto_heads, self.device)
        except Exception as exc:  # noqa: BLE001 - e.g. head profiling failed: this request fails, not the engine
            log.exception("%s: cannot set up the decoding methods of %s", self.name, seq.request_id)
            self._deliver(seq.request_id, EngineError(f"cannot set up the decoding method: {exc}"))
            return
        self.scheduler.add(seq)

    def _auto_heads(self, k: int) -> list[tuple[int, int]]:
        if self._head_profile is None:
            self._head_profile = HeadProfile(self.runner, self.tokenizer, self.model_path, self.num_layers,
                                             self.num_heads)
        return self._head_profile.top(k, self.cache_home)

    def _deliver(self, request_id: str, item) -> None:
        target = self._outboxes.get(request_id)
        if target is not None:
            loop, outbox = target
            loop.call_soon_threadsafe(outbox.put_nowait, item)


def _eos_ids(tokenizer, model_path: str) -> set[int]:
    """The tokens that may end a constrained output, as vLLM counts them: the tokenizer's EOS and the
    generation config's."""
    from transformers import GenerationConfig

    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    try:
        eos = GenerationConfig.from_pretrained(model_path).eos_token_id
    except OSError:  # no generation_config.json
        return ids
    return ids | ({eos} if isinstance(eos, int) else set(eos or ()))
