"""Braid agents: LangGraph workflows over MCP tools, run the same way from Python, the CLI, MCP
clients and the OpenAI API.

    from braid.agents import load_workflow
    result = load_workflow("example").invoke("What is 37 * 91?")
    print(result.output.answer, result.usage.total_tokens)
"""
from braid.server._lazy import lazy_exports

__all__ = ["RunContext", "RunResult", "RuntimeSettings", "Workflow", "WorkflowConfig", "WorkflowInput",
           "WorkflowOutput", "WorkflowSpec", "load_workflow", "register", "workflow_names"]

__getattr__, __dir__ = lazy_exports(__name__, __all__, {
    ".runtime.runner": ["Workflow", "load_workflow"],
    ".runtime.events": ["RunResult"],
    ".runtime.context": ["RunContext"],
    ".runtime.config": ["RuntimeSettings", "WorkflowConfig"],
    ".runtime.io": ["WorkflowInput", "WorkflowOutput"],
    ".runtime.registry": ["WorkflowSpec", "register", "workflow_names"],
})
