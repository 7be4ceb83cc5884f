"""MCP surface of the Python sandbox (`braid mcp serve python`); isolation is in `sandbox.py`."""

import dataclasses
from typing import Annotated

from mcp.server.fastmcp import FastMCP
from pydantic import BaseModel, Field

from ._serving import ServeOptions, new_fastmcp
from .sandbox import SandboxLimits, detect_isolation, run_python

__all__ = ["PythonRunResult", "build_server"]


class PythonRunResult(BaseModel):
    stdout: str
    stderr: str
    value: str | None
    """repr() of the value of the code's last expression, if it ended with one."""
    error: str | None
    """The exception (with type), or the limit that stopped the code; None on success."""
    exit_code: int
    timed_out: bool
    output_truncated: bool
    duration_s: float


def build_server(options: ServeOptions) -> FastMCP:
    limits = SandboxLimits(**options.sandbox_limits)
    isolation = detect_isolation()
    if isolation != "namespaces" and not options.allow_weak_sandbox:
        raise RuntimeError("the python server needs namespace isolation (root and util-linux unshare); "
                           "--allow-weak-sandbox runs code with process limits only, which is not a security boundary")
    instructions = (
        "Runs Python 3 code in a fresh sandbox per call: no network, a private temporary working "
        f"directory, read-only filesystem elsewhere, {limits.wall_seconds:g} s wall-clock limit, "
        f"{limits.memory_bytes >> 20} MiB memory. Nothing persists between calls."
    )
    server = new_fastmcp("python", instructions, options)

    @server.tool(name="run_python")
    async def run_python_code(
        code: Annotated[str, Field(min_length=1, max_length=200_000, description="Python source to execute")],
        timeout_s: Annotated[float | None, Field(gt=0, le=limits.wall_seconds,
                                                 description="Wall-clock limit for this call (defaults to the server's)")] = None,
    ) -> PythonRunResult:
        """Run Python code in an isolated sandbox and return stdout, stderr, the last value and errors.

        Like a notebook cell: if the code ends with an expression its repr() is returned as
        `value`. The process has no network, cannot write outside its temporary working directory,
        and is killed (with all its children) at the time, CPU, memory or output limits.
        """
        call_limits = limits if timeout_s is None else dataclasses.replace(limits, wall_seconds=timeout_s)
        result = await run_python(code, call_limits, allow_weak_isolation=options.allow_weak_sandbox)
        fields = dataclasses.asdict(result)
        fields.pop("isolation")
        return PythonRunResult(**fields)

    return server
