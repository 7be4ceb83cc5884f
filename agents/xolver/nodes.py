"""Xolver's nodes: plan -> retrieve -> agents in parallel (Send) -> judge -> (next round | verify) ->
remember. Each takes the LangGraph state and the run's context (models per role, MCP tools)."""
from __future__ import annotations

import json
import re

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.runtime import Runtime
from langgraph.types import Send

from ..runtime.context import RunContext
from ..runtime.tool_calls import run_tool_calls, tool_message_text
from . import prompts
from .answers import extract_answer
from .config import XolverConfig
from .experience import remember as write_experience
from .experience import retrieve as find_exemplars
from .scoring import TOP_SCORE, execution_score, majority, parse_judge_score
from .state import AgentTask, Exemplar, Response, XolverState, merge_store

__all__ = ["judge", "plan", "remember", "retrieve", "route", "solve", "verify"]

_ROLE_LINE = re.compile(r"^\s*\d+\.\s*\**([^:*\n]+?)\**\s*:", re.M)


def _config(runtime: Runtime[RunContext]) -> XolverConfig:
    return runtime.context.config  # type: ignore[return-value]


def _tokens(*messages: BaseMessage) -> int:
    return sum((getattr(m, "usage_metadata", None) or {}).get("total_tokens", 0) for m in messages)


def extract_roles(reply: str, m: int) -> list[str]:
    """The roles under "Influential Roles:" (else any numbered roles), topped up with generic ones."""
    section = re.split(r"influential roles\s*:", reply, flags=re.I)
    names = _ROLE_LINE.findall(section[-1] if len(section) > 1 else reply)
    roles = list(dict.fromkeys(n.strip() for n in names if 1 < len(n.strip()) <= 60))[:m]
    return roles + [f"expert agent {i + 1}" for i in range(len(roles), m)]


async def plan(state: XolverState, runtime: Runtime[RunContext]) -> dict:
    config = _config(runtime)
    tokens = 0
    if config.plan_roles:
        reply = await runtime.context.model("planner").ainvoke([HumanMessage(prompts.PLANNER.format(
            task_type=config.task_type, problem=state["problem"], m=config.agents))])
        roles, tokens = extract_roles(str(reply.content), config.agents), _tokens(reply)
    else:
        roles = [f"expert agent {i + 1}" for i in range(config.agents)]
    runtime.context.progress(roles=roles)
    return {"roles": roles, "tokens": state.get("tokens", 0) + tokens}


async def retrieve(state: XolverState, runtime: Runtime[RunContext]) -> dict:
    config = _config(runtime)
    exemplars = await find_exemplars(runtime.context, config, state["problem"])
    runtime.context.progress(exemplars=len(exemplars),
                             similarity=[round(e.similarity or 0, 3) for e in exemplars],
                             self_retrieval=not exemplars and config.self_retrieval)
    return {"exemplars": [e.model_dump() for e in exemplars], "round": 0, "store": [],
            "self_retrieve": not exemplars and config.self_retrieval}


def route(state: XolverState, runtime: Runtime[RunContext]) -> list[Send] | str:
    """The agents of the next round (in parallel), or the verifier once the team is done."""
    if state.get("stop_reason"):
        return "verify"
    previous = {r["agent"]: r for r in state.get("responses", []) if r["round"] == state["round"] - 1}
    return [Send("solve", AgentTask(agent=i, role=role, round=state["round"], problem=state["problem"],
                                    exemplars=state.get("exemplars", []), previous=previous.get(i),
                                    store=state.get("store", [])))
            for i, role in enumerate(state["roles"])]


def _exemplar_turns(exemplars: list[Exemplar]) -> list[BaseMessage]:
    turns: list[BaseMessage] = []
    for ex in exemplars:
        answer = ex.solution
        if ex.code:
            answer = f"```python\n{ex.code}\n```\n{answer}"
        if ex.answer and "\\boxed" not in answer:
            answer += f"\n\\boxed{{{ex.answer}}}"
        turns += [HumanMessage(ex.problem), AIMessage(answer)]
    return turns


def _python_result(message: ToolMessage) -> tuple[str | None, str | None]:
    """(printed result, error) of a run_python call."""
    text = tool_message_text(message)
    try:
        result = json.loads(text)
    except ValueError:
        return None, text if message.status == "error" else None
    if not isinstance(result, dict):
        return str(result), None
    if result.get("timed_out"):
        return None, "timed out"
    lines = [line for line in str(result.get("stdout") or "").splitlines() if line.strip()]
    printed = lines[-1].strip() if lines else result.get("value")
    return printed, result.get("error")


def _server_time_limit(tools) -> float | None:
    """The python server's own cap on `timeout_s` (its `--timeout`), from the tool's input schema."""
    for tool in tools:
        schema = tool.args_schema if isinstance(tool.args_schema, dict) else {}
        field = schema.get("properties", {}).get("timeout_s", {})
        for option in [field, *field.get("anyOf", [])]:
            if "maximum" in option:
                return float(option["maximum"])
    return None


async def solve(task: AgentTask, runtime: Runtime[RunContext]) -> dict:
    ctx, config = runtime.context, _config(runtime)
    sampling = {"seed": config.seed + task["round"] * config.agents + task["agent"]}
    if config.agent_temperature is not None:
        sampling["temperature"] = config.agent_temperature
    base = ctx.model("solver")
    model = base.bind(**sampling)
    spent: list[BaseMessage] = []
    context: list[BaseMessage] = [SystemMessage(prompts.AGENT_SYSTEM.format(
        role=task["role"], task_type=config.task_type, code_instruction=prompts.CODE_INSTRUCTION[config.code]))]
    context += _exemplar_turns([Exemplar.model_validate(e) for e in task["exemplars"]])
    if not task["exemplars"] and config.self_retrieval and task["round"] == 0:
        recall = await model.ainvoke([HumanMessage(prompts.SELF_RECALL.format(task_type=config.task_type,
                                                                              problem=task["problem"]))])
        spent.append(recall)
        context += [HumanMessage("Recall a related problem and its solution."), AIMessage(str(recall.content))]
    request = task["problem"]
    if task["previous"]:
        store = "\n\n".join(prompts.STORE_ENTRY.format(
            role=r["role"], response=r["text"], executed=r["executed"], score=r["score"], feedback=r["feedback"])
            for r in task["store"]) or "None"
        request += "\n\n" + prompts.REVISION.format(previous=task["previous"]["text"], store=store)
    messages = [*context, HumanMessage(request)]

    code = executed = error = None
    if config.code == "none":
        reply = await model.ainvoke(messages)
        spent.append(reply)
        text = str(reply.content)
    else:
        tools = ctx.tools("python")
        # bind_tools on the model itself, with the sampling: on a `.bind()` binding it would drop the seed
        bound = base.bind_tools(tools, tool_choice="required" if config.code == "required" else "auto",
                                parallel_tool_calls=False, **sampling)
        reply = await bound.ainvoke(messages)
        spent.append(reply)
        text = str(reply.content)
        if reply.tool_calls:
            limit = _server_time_limit(tools)
            for call in reply.tool_calls:
                call["args"]["timeout_s"] = min(config.code_timeout_s, limit) if limit else config.code_timeout_s
            (result, *_) = await run_tool_calls(reply, tools)
            code = str(reply.tool_calls[0]["args"].get("code", ""))
            executed, error = _python_result(result)
            text = f"```python\n{code}\n```\nOutput: {executed if error is None else error}"
            if config.answer_turn:
                final = await model.ainvoke([*messages, reply, result, HumanMessage(prompts.ANSWER_REQUEST.format(
                    output=executed if error is None else f"an error: {error}"))])
                spent.append(final)
                text += "\n" + str(final.content)
    answer = extract_answer(text if config.answer_turn or config.code == "none" else executed)
    if answer is None and executed is not None:
        answer = extract_answer(executed)
    response = Response(agent=task["agent"], role=task["role"], round=task["round"], text=text, answer=answer,
                        code=code, executed=executed, code_error=error, tokens=_tokens(*spent))
    ctx.progress(round=task["round"] + 1, agent=task["agent"], answer=answer, executed=executed)
    return {"responses": [response.model_dump()]}


async def judge(state: XolverState, runtime: Runtime[RunContext]) -> dict:
    ctx, config = runtime.context, _config(runtime)
    current = [Response.model_validate(r) for r in state["responses"] if r["round"] == state["round"]]
    tokens = sum(r.tokens for r in current)
    judged = []
    for response in current:
        score, feedback = execution_score(response, [o for o in current if o.agent != response.agent])
        if config.llm_judge:
            reply = await ctx.model("judge").ainvoke([HumanMessage(prompts.JUDGE.format(
                task_type=config.task_type, problem=state["problem"], response=response.text))])
            tokens += _tokens(reply)
            opinion, note = parse_judge_score(str(reply.content))
            score, feedback = (score + opinion) / 2, f"{feedback}; {note}: {opinion:g}"
        judged.append(response.model_copy(update={"score": score, "feedback": feedback}))
    store = merge_store([Response.model_validate(r) for r in state.get("store", [])], judged, config.agents)
    spent = state.get("tokens", 0) + tokens
    finished_round = state["round"] + 1
    stop = ""
    if len(store) == config.agents and all(r.score >= TOP_SCORE for r in store):
        stop = "all agents reached the top score"
    elif finished_round >= config.rounds:
        stop = f"{config.rounds} rounds done"
    elif config.token_budget is not None and spent >= config.token_budget:
        stop = f"token budget spent ({spent} >= {config.token_budget})"
    ctx.progress(round=finished_round, scores=[r.score for r in judged], best=store[0].answer if store else None,
                 tokens=spent, stop=stop or None)
    return {"store": [r.model_dump() for r in store], "round": finished_round, "tokens": spent,
            "stop_reason": stop, "best_by_round": [*state.get("best_by_round", []), store[0].answer if store else None],
            "tokens_by_round": [*state.get("tokens_by_round", []), spent]}


async def verify(state: XolverState, runtime: Runtime[RunContext]) -> dict:
    config = _config(runtime)
    store = [Response.model_validate(r) for r in state.get("store", [])]
    if not store:
        return {"answer": None, "best": None}
    best = (majority(store) if config.selection == "majority" else None) or store[0]
    answer, tokens = best.answer, 0
    if answer is None:
        reply = await runtime.context.model("verifier").ainvoke([HumanMessage(prompts.VERIFIER.format(
            task_type=config.task_type, response=best.text))])
        answer, tokens = extract_answer(str(reply.content)), _tokens(reply)
    return {"answer": answer, "best": best.model_dump(), "tokens": state.get("tokens", 0) + tokens}


async def remember(state: XolverState, runtime: Runtime[RunContext]) -> dict:
    config = _config(runtime)
    best = Response.model_validate(state["best"]) if state.get("best") else None
    if not (config.write_memory and best and best.score >= config.verified_score
            and state.get("answer") is not None):
        return {"memory_id": None}
    model = runtime.context.config.role("solver").model or ""
    memory_id = await write_experience(runtime.context, config, state["problem"],
                                       best.model_copy(update={"answer": state["answer"]}), model)
    runtime.context.progress(remembered=memory_id, score=best.score)
    return {"memory_id": memory_id}
