"""Xolver's prompts, after the released code's (kagnlp/Xolver) planner, agent, judge, verifier and
self-recall prompts, adapted to executed code and chat-turn exemplars."""
from __future__ import annotations

__all__ = ["AGENT_SYSTEM", "ANSWER_REQUEST", "JUDGE", "PLANNER", "SELF_RECALL", "STORE_ENTRY", "VERIFIER"]

PLANNER = """You are a planner for solving a {task_type} problem:
{problem}

First draft more than {m} specialized roles that could solve it together, under "Specialized Roles:", one per
line as "N. Role Name: what this agent focuses on". Then select exactly the {m} most influential of them under
"Influential Roles:", in the same format."""

AGENT_SYSTEM = """You are a {role}. Solve the {task_type} problem you are given. {code_instruction}
Wrap your final answer, a single number, in \\boxed{{}}."""

CODE_INSTRUCTION = {
    "required": "First write Python code that computes the answer and prints it; it will be run for you.",
    "auto": "You may write Python code that prints the answer; it will be run for you.",
    "none": "Reason step by step.",
}

SELF_RECALL = """Recall from your own knowledge a {task_type} problem related to, but different from, this one:
{problem}

Write the recalled problem after "Problem:" and its complete solution after "Solution:"."""

STORE_ENTRY = """Agent: {role}
Response: {response}
Executed result: {executed}
Score: {score:.2f} ({feedback})"""

ANSWER_REQUEST = """The code printed: {output}
Give your final answer to the problem as \\boxed{{number}}."""

REVISION = """Your previous response was:
{previous}

The leading responses so far, with their executed results and scores:
{store}

Think about where you went wrong, relating to the responses above, and solve the problem again."""

JUDGE = """You are a judge. Judge the candidate solution to this {task_type} problem:
{problem}

Candidate solution:
{response}

Reply "Score: 1" if it is correct, otherwise "Score: 0", then your reasoning."""

VERIFIER = """You are an answer extractor. Extract the final answer, a single number, from this response to a
{task_type} problem:
{response}

Reply with the number only, inside \\boxed{{}}."""
