"""The engine contract's plan types: what a plan needs, and the one rule for a method an engine lacks."""
from __future__ import annotations

import pytest

from braid.server.plans import (Capability, ContrastiveMethod, ContrastivePlan, DecodingPlan, ImageInputs, Refusal,
                                SteeringPlan, capability_refusal)

HF_TEXT = frozenset({Capability.ICD, Capability.ASCD, Capability.STEER})
VLLM = frozenset({Capability.ICD})


def test_required_capabilities():
    steer = SteeringPlan([1, 2])
    assert DecodingPlan().required_capabilities() == frozenset()
    assert DecodingPlan(steer=steer).required_capabilities() == {Capability.STEER}
    ascd = ContrastivePlan(ContrastiveMethod.ASCD, negative_prompt_ids=[1], steer=steer)
    assert DecodingPlan(ascd).required_capabilities() == {Capability.ASCD, Capability.STEER}
    vcd = ContrastivePlan("vcd", negative_prompt_ids=[1])
    assert DecodingPlan(vcd, images=ImageInputs(None)).required_capabilities() == {Capability.VCD, Capability.IMAGES}
    assert DecodingPlan(ascd).branch_prompt_tokens == 1 and DecodingPlan(steer=steer).branch_prompt_tokens == 0
    assert DecodingPlan(ascd).steering is steer


def test_plans_are_frozen_and_normalized():
    steer = SteeringPlan([3], [[0, 1]])
    assert steer.positions == (3,) and steer.heads == ((0, 1),)
    with pytest.raises(AttributeError):
        steer.strength = 2.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="steer exactly when"):
        ContrastivePlan(ContrastiveMethod.ASCD)
    with pytest.raises(ValueError, match="steer exactly when"):
        ContrastivePlan(ContrastiveMethod.ICD, steer=steer)


@pytest.mark.parametrize("needed,capabilities,want", [
    ({Capability.ICD}, HF_TEXT, None),
    ({Capability.STEER}, VLLM, Refusal("model 'm' runs on an engine that cannot do ['steer']; serve it with engine "
                                       "'transformers' to use these decoding methods", "steer")),
    ({Capability.ICD, Capability.STEER}, frozenset(), Refusal(
        "model 'm' runs on an engine that cannot do ['contrastive', 'steer']; serve it with engine 'transformers' "
        "to use these decoding methods", "contrastive")),
    ({Capability.ASCD}, VLLM, Refusal("contrastive method 'ascd' is not available for model 'm' (it can run: "
                                      "['icd']; the transformers engine runs icd, ascd and steer)",
                                      "contrastive.method")),
    ({Capability.VCD}, HF_TEXT, Refusal("contrastive method 'vcd' needs image inputs and a multimodal (LLaVA-style) "
                                        "model; model 'm' cannot run it (it can run: ['ascd', 'icd'])",
                                        "contrastive.method")),
    ({Capability.IMAGES, Capability.ICD}, VLLM, Refusal(
        "model 'm' is not a vision-language model: it does not accept image inputs")),
])
def test_capability_refusal(needed, capabilities, want):
    assert capability_refusal("m", needed, capabilities) == want
