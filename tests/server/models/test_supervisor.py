"""Engines that fail are noticed, their requests ended with 503s, and the engine restarted, while
the server's other models keep serving: on a real `braid serve`, with faults a real deployment
meets (the vLLM engine-core process killed, an exception in the transformers engine's step)."""
from __future__ import annotations

import asyncio
import os
import signal

import httpx
import psutil
import pytest

from fault_clients import FAULT_HOOK, metric, start_streams, wait_health
from server_process import start_server, stop_server
from tiny_models import build_tiny_llama

API_KEY = "fault-key"
RESTART = {"backoff_s": 2.0, "wait_s": 0.3, "max_attempts": 3}  # the backoff leaves time to see 503s
LONG = {"prompt": "hello there", "max_tokens": 1500, "ignore_eos": True, "temperature": 0}
SHORT = {"prompt": "hello there", "max_tokens": 8, "temperature": 0}


@pytest.fixture(scope="module")
def tiny_2048_dir(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-2048"), max_position_embeddings=2048)


def _settings(model_dir, target_engine: str, restart: dict) -> dict:
    """`tiny` on the engine under test, and `other`, a second model that must keep serving."""
    common = {"source": str(model_dir), "dtype": "float32", "max_num_seqs": 8}
    target = {"vllm": {"engine": "vllm", "engine_options": {"enforce_eager": True, "kv_cache_memory_bytes": 128 << 20}},
              "transformers": {"engine": "transformers"},
              # Admission would refuse the third long stream on a slow machine; these tests are about healing.
              "bytelevel": {"kind": "bytelevel", "max_backlog_s": None}}[target_engine]
    return {"api_key": API_KEY, "log_level": "info", "engine_restart": restart,
            "models": [{"id": "tiny", **target, **common}, {"id": "other", "engine": "transformers", **common}]}


def _hooked_env(fault_file) -> dict:
    """The test server loads fault_hook/sitecustomize.py: 20 ms per step, and a fault on demand."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(FAULT_HOOK), os.environ.get("PYTHONPATH")])),
            "BRAID_TEST_FAULT_FILE": str(fault_file), "BRAID_TEST_STEP_DELAY_S": "0.02", "OMP_NUM_THREADS": "1"}


def _client(handle) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=handle.root_url, headers=handle.headers(), timeout=120)


async def _text(client, model: str) -> str:
    response = await client.post("/v1/completions", json={"model": model, **SHORT})
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["text"]


def _descriptors(pid: int) -> int:
    """The server process's open descriptors other than sockets (connections come and go)."""
    fd_dir = f"/proc/{pid}/fd"
    return sum(1 for fd in os.listdir(fd_dir) if not _readlink(f"{fd_dir}/{fd}").startswith("socket:"))


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:  # closed meanwhile
        return "socket:"


async def _fault_cycle(handle, inject, failure_words: str, producing: int | None = None) -> None:
    """Streams and a whole request in flight on `tiny` (``producing`` of the streams running, the
    rest queued); ``inject()`` breaks its engine; then every observable promise of the supervisor
    is checked, up to serving again."""
    async with _client(handle) as client:
        tiny_before, other_before = await _text(client, "tiny"), await _text(client, "other")
        descriptors_before = _descriptors(handle.process.pid)
        streams = await start_streams(client, {"model": "tiny", **LONG}, 3, producing)
        whole = asyncio.create_task(client.post("/v1/completions", json={"model": "tiny", **LONG}))
        await asyncio.sleep(0.5)  # admitted and running
        inject()
        took, health = await wait_health(client, 503, timeout=10)
        assert took < 1.0, f"/health noticed the failure only after {took:.2f} s"
        assert health["models"]["tiny"]["state"] in ("failed", "restarting"), health
        assert failure_words in health["models"]["tiny"]["reason"], health
        assert health["models"]["other"]["state"] == "ready", health

        # Arriving while the engine is down: a 503 with Retry-After once wait_s (0.3 s) is spent.
        late = await client.post("/v1/completions", json={"model": "tiny", **SHORT})
        assert late.status_code == 503, late.text
        assert late.json()["error"]["type"] == "service_unavailable_error"
        assert int(late.headers["retry-after"]) >= 1
        # The other model serves throughout, and answers as before.
        assert await _text(client, "other") == other_before

        for task, result in streams:
            await asyncio.wait_for(task, 30)
            assert result.done_last, result.events[-3:]
            assert isinstance(result.events[-2], dict) and result.events[-2]["error"]["code"] == 503, result.events[-2]
            assert failure_words in result.events[-2]["error"]["message"]
            assert result.finish_reasons == []  # ended by the failure, not finished
        response = await asyncio.wait_for(whole, 30)
        assert response.status_code == 503 and response.json()["error"]["code"] == 503, response.text
        assert int(response.headers["retry-after"]) >= 1

        took, health = await wait_health(client, 200, timeout=240)
        assert health["models"]["tiny"] == {"state": "ready", "reason": None, "restarts": 1}, health
        assert _descriptors(handle.process.pid) <= descriptors_before + 2, "the restart leaked file descriptors"
        assert await _text(client, "tiny") == tiny_before  # the new engine answers as the old one did
        metrics = (await client.get("/metrics")).text
        assert metric(metrics, "braid:engine_restarts_total", model_name="tiny") == 1
        assert metric(metrics, "braid:engine_restarts_total", model_name="other") == 0
        assert metric(metrics, "braid:engine_state", model_name="tiny", state="ready") == 1
        assert metric(metrics, "braid:engine_state", model_name="tiny", state="failed") == 0


@pytest.mark.parametrize("engine", ["transformers", "bytelevel"])
async def test_an_exception_in_an_engine_step_is_healed(tiny_2048_dir, tmp_path, engine):
    fault_file = tmp_path / "fault"
    handle = start_server(_settings(tiny_2048_dir, engine, RESTART), tmp_path, env=_hooked_env(fault_file))
    try:
        # byte-level requests take the worker in turn: one stream runs, the others wait their turn
        await _fault_cycle(handle, lambda: fault_file.write_text(""), "injected fault",
                           producing=1 if engine == "bytelevel" else None)
    finally:
        stop_server(handle)
    assert "the engine is back" in handle.log_path.read_text()


def _kill_engine_core(server_pid: int) -> int:
    cores = [p for p in psutil.Process(server_pid).children(recursive=True)
             if "EngineCore" in p.name() or "EngineCore" in " ".join(p.cmdline())]
    assert len(cores) == 1, [(p.pid, p.name()) for p in cores]
    cores[0].send_signal(signal.SIGKILL)  # as the kernel's OOM killer would
    return cores[0].pid


@pytest.mark.slow
async def test_a_killed_vllm_engine_core_is_healed(tiny_2048_dir, tmp_path):
    handle = start_server(_settings(tiny_2048_dir, "vllm", RESTART), tmp_path, env={"OMP_NUM_THREADS": "1"})
    try:
        await _fault_cycle(handle, lambda: _kill_engine_core(handle.process.pid), "engine core")
    finally:
        stop_server(handle)


async def test_with_restarts_off_the_server_exits_non_zero(tiny_2048_dir, tmp_path):
    fault_file = tmp_path / "fault"
    settings = _settings(tiny_2048_dir, "transformers", {"enabled": False})
    handle = start_server(settings, tmp_path, env={**_hooked_env(fault_file), "BRAID_DRAIN_TIMEOUT_S": "5"})
    try:
        async with _client(handle) as client:
            streams = await start_streams(client, {"model": "tiny", **LONG}, 1)
            fault_file.write_text("")
            task, result = streams[0]
            await asyncio.wait_for(task, 30)
            assert result.done_last and result.events[-2]["error"]["code"] == 503, result.events[-3:]
        code = await asyncio.to_thread(handle.process.wait, 60)
        assert code == 1, handle.log_tail()
        assert "engine_restart is off" in handle.log_path.read_text()
    finally:
        stop_server(handle)


# --- in process: waiting through a restart, and giving up (a real HFEngine; the fault patched in) ---

def _greedy_reference(model_dir, prompt: list[int], n: int) -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = torch.tensor([prompt])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n,
                         min_new_tokens=n, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def _supervised(model_dir, policy: dict, give_up=lambda why: None, launches: list | None = None,
                fail_restarts: bool = False):
    from braid.server.engines.hf import HFEngine
    from braid.server.models.config import RestartPolicy
    from braid.server.models.supervisor import SupervisedEngine

    async def launch():
        if launches is not None:
            launches.append(len(launches))
            if len(launches) > 1 and fail_restarts:
                raise RuntimeError("the restarted engine does not start")
        engine = HFEngine("tiny", str(model_dir), max_num_seqs=4, dtype="float32")
        await engine.start()
        return engine

    return SupervisedEngine("tiny", launch, RestartPolicy(**policy), give_up)


async def _tokens(engine, request_id: str, prompt: list[int], n: int) -> list[int]:
    from braid.server.engines.base import EngineRequest
    from braid.server.sampling import SamplingSpec

    outs = [o async for o in engine.generate(EngineRequest(request_id, prompt, SamplingSpec(max_tokens=n, temperature=0)))]
    return [t for o in outs for t in o.token_ids]


async def test_a_request_arriving_during_the_restart_waits_for_the_new_engine(tiny_llama_dir, monkeypatch):
    from braid.server.engines.base import EngineUnavailable
    from braid.server.engines.hf import engine as hf_engine

    supervised = _supervised(tiny_llama_dir, {"backoff_s": 0.5, "wait_s": 60})
    await supervised.start()
    try:
        real_step, faults = hf_engine.run_step, [1]

        def failing_step(*args, **kwargs):
            if faults:
                faults.pop()
                raise RuntimeError("injected fault")
            return real_step(*args, **kwargs)

        monkeypatch.setattr(hf_engine, "run_step", failing_step)
        with pytest.raises(EngineUnavailable, match="injected fault"):
            await _tokens(supervised, "a", [5, 6, 7], 4)
        # A request sent now waits through the backoff and the restart, then runs on the new engine.
        assert supervised.health().state.value in ("failed", "restarting")
        tokens = await asyncio.wait_for(_tokens(supervised, "b", [5, 6, 7], 6), 60)
        assert tokens == _greedy_reference(tiny_llama_dir, [5, 6, 7], 6)
        assert supervised.health().restarts == 1
    finally:
        await supervised.shutdown()


async def test_restarts_that_keep_failing_give_up_after_max_attempts(tiny_llama_dir, monkeypatch):
    from braid.server.engines.base import EngineUnavailable
    from braid.server.engines.hf import engine as hf_engine

    gave_up, launches = [], []
    supervised = _supervised(tiny_llama_dir, {"backoff_s": 0.05, "wait_s": 0, "max_attempts": 2}, gave_up.append,
                             launches, fail_restarts=True)
    await supervised.start()
    try:
        def failing_step(*args, **kwargs):
            raise RuntimeError("injected fault")

        monkeypatch.setattr(hf_engine, "run_step", failing_step)
        with pytest.raises(EngineUnavailable):
            await _tokens(supervised, "a", [5, 6, 7], 4)
        for _ in range(100):
            if gave_up:
                break
            await asyncio.sleep(0.05)
        assert len(launches) == 3  # the first start, then max_attempts restarts
        assert supervised.health().state.value == "stopped" and supervised.health().restarts == 2
        assert gave_up and "gave up after 2 restarts in a row" in gave_up[0], gave_up
        with pytest.raises(EngineUnavailable, match="not available"):
            await _tokens(supervised, "b", [5, 6, 7], 4)
    finally:
        await supervised.shutdown()
