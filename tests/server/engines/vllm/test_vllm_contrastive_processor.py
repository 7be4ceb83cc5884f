"""The vLLM logits processor that ties a contrastive pair together, fed batch updates by hand."""
from __future__ import annotations

import logging

import pytest
import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

from braid.server.engines.vllm.contrastive import NEGATIVE, POSITIVE, ContrastivePairProcessor, pair_args
from braid.server.plans import ContrastiveMethod, ContrastivePlan

POS_PROMPT, NEG_PROMPT, PLAIN_PROMPT = [5, 17, 42], [9, 8, 7, 6], [300, 7]


def branch(pair, role, alpha=1.0, beta=0.1, bias=None, repetition=1.0):
    contrastive = ContrastivePlan(ContrastiveMethod.ICD, alpha, beta)
    return SamplingParams(seed=3, extra_args=pair_args(pair, role, contrastive, bias, repetition))


def added(*rows):
    return BatchUpdate(batch_size=len(rows), removed=[], moved=[], added=list(rows))


@torch.no_grad()
def last_logits(model, tokens):
    return model(torch.tensor([tokens])).logits[0, -1].float()


def reference_scores(pos, neg, alpha, beta):
    lp, ln = pos.double().log_softmax(-1), neg.double().log_softmax(-1)
    scores = (1 + alpha) * lp - alpha * ln
    return scores.masked_fill(lp.exp() < beta * lp.exp().max(), float("-inf"))


def test_pair_rows_get_the_combined_scores_and_other_rows_are_untouched(reference):
    model, _ = reference
    generated = [50, 150]
    proc = ContrastivePairProcessor(None, torch.device("cpu"), False)
    proc.update_state(added((0, branch("a", POSITIVE, 1.5, 0.2), POS_PROMPT, list(generated)),
                            (1, SamplingParams(), PLAIN_PROMPT, []),
                            (2, branch("a", NEGATIVE, 1.5, 0.2), NEG_PROMPT, list(generated))))
    pos, plain, neg = (last_logits(model, p + g) for p, g in
                       ((POS_PROMPT, generated), (PLAIN_PROMPT, []), (NEG_PROMPT, generated)))
    out = proc.apply(torch.stack([pos, plain, neg]))
    want = reference_scores(pos, neg, 1.5, 0.2)
    finite = torch.isfinite(want)
    assert 1 < int(finite.sum()) < want.numel()  # the plausibility mask excludes some tokens, not all
    for row in (0, 2):
        assert torch.equal(torch.isfinite(out[row]), finite)
        torch.testing.assert_close(out[row][finite].double(), want[finite], atol=1e-4, rtol=0)
    assert torch.equal(out[1], plain)


def test_bias_and_repetition_penalty_act_on_the_scores():
    proc = ContrastivePairProcessor(None, torch.device("cpu"), False)
    prompt = [1, 2]
    proc.update_state(added((0, branch("b", POSITIVE, 1.0, 0.0, {3: 0.5}, 2.0), prompt, [4]),
                            (1, branch("b", NEGATIVE, 1.0, 0.0, {3: 0.5}, 2.0), [7], [4])))
    pos, neg = torch.randn(8), torch.randn(8)
    out = proc.apply(torch.stack([pos, neg]))
    want = reference_scores(pos, neg, 1.0, 0.0)
    want[3] += 0.5
    for token in (1, 2, 4):  # the positive branch's prompt and output tokens; not the negative's (7)
        want[token] = want[token] / 2.0 if want[token] > 0 else want[token] * 2.0
    torch.testing.assert_close(out[0].double(), want, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], out[0])


def test_pairs_follow_moves_and_swaps(reference):
    proc = ContrastivePairProcessor(None, torch.device("cpu"), False)
    proc.update_state(added((0, branch("c", POSITIVE), POS_PROMPT, []), (1, SamplingParams(), PLAIN_PROMPT, []),
                            (2, branch("c", NEGATIVE), NEG_PROMPT, [])))
    # The plain request finishes; vLLM condenses the batch (2 -> 1), then swaps the two rows.
    proc.update_state(BatchUpdate(batch_size=2, removed=[1], added=[], moved=[(2, 1, MoveDirectionality.UNIDIRECTIONAL)]))
    proc.update_state(BatchUpdate(batch_size=2, removed=[], added=[], moved=[(0, 1, MoveDirectionality.SWAP)]))
    neg, pos = torch.randn(2, 16)
    out = proc.apply(torch.stack([neg, pos]))
    want = reference_scores(pos, neg, 1.0, 0.1)
    torch.testing.assert_close(out[1].double(), want, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[0], out[1])
    assert not proc.broken


def test_a_split_pair_is_detected_and_forced_apart(caplog):
    """Unequal output lengths: each row is forced to a token its partner did not produce there."""
    proc = ContrastivePairProcessor(None, torch.device("cpu"), False)
    pos_out, neg_out = [11, 12, 13], [11, 12]
    proc.update_state(added((0, branch("d", POSITIVE), POS_PROMPT, pos_out),
                            (1, branch("d", NEGATIVE), NEG_PROMPT, neg_out),
                            (2, branch("e", POSITIVE), POS_PROMPT, [])))  # "e": negative branch absent
    with caplog.at_level(logging.ERROR, logger="braid.server.engines.vllm.contrastive"):
        out = proc.apply(torch.randn(3, 20))
    assert "pair d split: positive branch at 3 tokens, negative at 2 tokens" in caplog.text
    assert "pair e split: positive branch at 0 tokens, negative absent" in caplog.text
    chosen = [int(row.argmax()) for row in out]
    assert all(int(torch.isfinite(row).sum()) == 1 for row in out)  # one-hot: vLLM must sample it
    assert chosen[1] != pos_out[2]  # the negative's token 3 differs from the positive's token 3
    assert proc.broken == {"d", "e"}
    # Once split, always split: even if the lengths agree again, the pair is not combined.
    neg_out.append(13)
    assert int(torch.isfinite(proc.apply(torch.randn(3, 20))[0]).sum()) == 1


@pytest.mark.parametrize("extra", [{"pair": "x", "role": 2}, {"role": 0}])
def test_malformed_pair_args_are_rejected(extra):
    from braid.server.engines.vllm.contrastive import PAIR_KEY

    with pytest.raises(ValueError, match=PAIR_KEY):
        ContrastivePairProcessor.validate_params(SamplingParams(seed=1, extra_args={PAIR_KEY: extra}))
