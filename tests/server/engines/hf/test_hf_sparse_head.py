"""A pair's negative branch scored only at the plausible tokens gives the same sampling
distribution and reported logprobs as its full row (the two differ by one constant per row)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from braid.server.engines.hf.model_runner import StepLogits
from braid.server.engines.hf.scheduler import Sequence
from braid.server.engines.hf.sparse_head import SparseHead
from braid.server.engines.hf.step import sparse_negative, unit_scores
from braid.server.plans import ContrastiveMethod, ContrastivePlan, DecodingPlan
from braid.server.sampling import SamplingSpec


class _Model(nn.Module):
    def __init__(self, vocab: int, dim: int, **config):
        super().__init__()
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        from transformers import LlamaConfig
        self.config = LlamaConfig(vocab_size=vocab, hidden_size=dim, num_attention_heads=1, num_key_value_heads=1,
                                  **config)


def _pair(beta: float, repetition_penalty: float = 1.0, alpha: float = 1.0) -> Sequence:
    spec = SamplingSpec(max_tokens=4, repetition_penalty=repetition_penalty,
                        plan=DecodingPlan(contrastive=ContrastivePlan(ContrastiveMethod.ICD, alpha, beta)))
    unit = Sequence("r", [1, 2], 2, spec)
    unit.negative = Sequence("r#negative", [3, 2], 2, spec)
    return unit


@pytest.mark.parametrize("alpha,beta", [(1.0, 0.1), (0.5, 0.02), (2.0, 0.5), (0.0, 0.1)])
def test_sparse_negative_row_gives_the_full_rows_distribution(alpha, beta):
    torch.manual_seed(0)
    model = _Model(vocab=300, dim=16)
    head = SparseHead.install(model)
    assert isinstance(model.lm_head, SparseHead)
    hidden = torch.randn(1, 3, 16) * 3  # rows: plain sequence, positive branch, negative branch
    full = model.lm_head(hidden)[0]
    plain = Sequence("p", [5], 1, SamplingSpec(max_tokens=4))
    unit = _pair(beta, alpha=alpha)
    seqs, units = [plain, unit, unit.negative], [plain, unit]

    head.skip_rows = [2]
    skipped = model.lm_head(hidden)[0]
    head.skip_rows = []
    assert torch.equal(skipped[:2], full[:2])
    sparse = StepLogits(skipped, {}, {2: head.captured[0, 0]}, head)
    want = unit_scores(StepLogits(full, {}), seqs, units)
    got = unit_scores(sparse, seqs, units)
    assert torch.equal(got[0], want[0])
    assert torch.equal(torch.isfinite(got[1]), torch.isfinite(want[1]))
    torch.testing.assert_close(got[1].log_softmax(-1), want[1].log_softmax(-1), atol=1e-5, rtol=0, equal_nan=False)
    assert int(got[1].argmax()) == int(want[1].argmax())


def test_when_the_full_row_is_needed():
    assert sparse_negative(_pair(beta=0.1))
    assert not sparse_negative(_pair(beta=0.0))  # every token may be plausible
    assert not sparse_negative(_pair(beta=0.1, repetition_penalty=1.3))  # not shift-invariant


def test_models_with_transformed_logits_keep_their_head():
    model = _Model(vocab=10, dim=4)
    model.config.final_logit_softcapping = 30.0
    assert SparseHead.install(model) is None and isinstance(model.lm_head, nn.Linear)
