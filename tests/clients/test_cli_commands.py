"""`braid models` and `braid chat` as users run them, against a real `braid serve` with a tiny model:
`chat` is driven in a pseudo-terminal (streamed replies, the conversation kept between turns, exit)."""
from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest
from openai import OpenAI

from server_process import start_server, stop_server

MODEL = "tiny-chat"


@pytest.fixture(scope="module")
def tiny_server(tiny_llama_dir, tmp_path_factory):
    handle = start_server({"models": [{"id": MODEL, "source": str(tiny_llama_dir), "engine": "transformers",
                                       "dtype": "float32", "max_model_len": 256}]},
                          tmp_path_factory.mktemp("cli-commands"))
    yield handle
    stop_server(handle)


def test_models_lists_what_the_server_serves(tiny_server):
    done = subprocess.run([sys.executable, "-m", "braid.clients.cli", "models", "--url", tiny_server.base_url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{MODEL}\tengine=transformers\tmax_model_len=256"]


class Terminal:
    """A process on a pseudo-terminal: what it prints, and lines typed into it."""

    def __init__(self, args: list[str]):
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
        os.close(slave)
        self.output = ""

    def read_until(self, pattern: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.output, re.S):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} in the terminal: {self.output[-2000:]!r}")
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if ready:
                try:
                    self.output += os.read(self.master, 65536).decode(errors="replace")
                except OSError:  # the process closed the terminal
                    break
        return self.output

    def type(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())

    def close(self) -> int:
        try:
            return self.process.wait(timeout=30)
        finally:
            os.close(self.master)


def test_chat_streams_keeps_the_conversation_and_exits(tiny_server):
    term = Terminal([sys.executable, "-m", "braid.clients.cli", "chat", "--url", tiny_server.base_url,
                     "--temperature", "0", "--max-tokens", "8", "--system", "Be brief."])
    try:
        term.read_until(r"you> ")
        term.type("hello there")
        term.read_until(rf"{MODEL}> .*?\r\nyou> ")
        term.type("and again")
        term.read_until(rf"{MODEL}> .*?\r\nyou> .*{MODEL}> .*?\r\nyou> ")
        term.type("/exit")
        assert term.close() == 0
    finally:
        if term.process.poll() is None:
            term.process.kill()
    # The terminal turns each "\n" into "\r\n"; a reply may hold newlines of its own.
    replies = [r.replace("\r\n", "\n") for r in re.findall(rf"{MODEL}> (.*?)\r\nyou> ", term.output, re.S)]
    assert len(replies) == 2

    # The same conversation sent directly, greedy: the chat's second reply is what the model answers to
    # the whole history (system, first turn and its reply), and not what it answers without it.
    client = OpenAI(base_url=tiny_server.base_url, api_key="none")
    ask = lambda messages: client.chat.completions.create(  # noqa: E731
        model=MODEL, messages=messages, temperature=0, max_tokens=8).choices[0].message.content
    history = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]
    assert ask(history) == replies[0]
    history += [{"role": "assistant", "content": replies[0]}, {"role": "user", "content": "and again"}]
    assert ask(history) == replies[1]
    assert ask([history[0], history[-1]]) != replies[1]
