"""Independent references: plain forward passes of the tiny model, no engine, no cache."""
from __future__ import annotations

import torch


@torch.no_grad()
def greedy(model, prompt_ids: list[int], max_new: int, eos_id: int | None) -> tuple[list[int], list[torch.Tensor]]:
    """Greedy continuation by full re-forward each step; returns ids and each step's log-softmax."""
    ids, steps = list(prompt_ids), []
    for _ in range(max_new):
        logits = model(torch.tensor([ids])).logits[0, -1].double()
        logprobs = torch.log_softmax(logits, -1)
        token = int(torch.argmax(logprobs))
        ids.append(token)
        steps.append(logprobs)
        if token == eos_id:
            break
    return ids[len(prompt_ids):], steps


@torch.no_grad()
def prompt_logprobs(model, prompt_ids: list[int]) -> list[float]:
    logprobs = torch.log_softmax(model(torch.tensor([prompt_ids])).logits[0].double(), -1)
    return [float(logprobs[i - 1, prompt_ids[i]]) for i in range(1, len(prompt_ids))]
