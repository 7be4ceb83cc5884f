"""Fault injection for a test server (put this folder on PYTHONPATH): patches the transformers
engine's step and the byte-level engine's, the one place a test changes the code it runs.

BRAID_TEST_STEP_DELAY_S slows every transformers step (so streams are surely running when the
fault comes); BRAID_TEST_BYTE_DELAY_S every byte position the byte-level engine reads (so its
worker's backlog is known); while the file named by BRAID_TEST_FAULT_FILE exists, the next step of either
engine removes it and raises.
"""
import os
import time


def _install() -> None:
    fault_file = os.environ.get("BRAID_TEST_FAULT_FILE")
    delay = float(os.environ.get("BRAID_TEST_STEP_DELAY_S", "0"))
    byte_delay = float(os.environ.get("BRAID_TEST_BYTE_DELAY_S", "0"))
    if not fault_file and not delay and not byte_delay:
        return
    from braid.server.engines.bytelevel.request_state import ByteRequestState
    from braid.server.engines.hf import engine as hf_engine

    def fault() -> None:
        if fault_file and os.path.exists(fault_file):
            os.remove(fault_file)
            raise RuntimeError("injected fault")

    real_step = hf_engine.run_step

    def run_step(*args, **kwargs):
        if delay:
            time.sleep(delay)
        fault()
        return real_step(*args, **kwargs)

    real_byte_step = ByteRequestState.step

    def byte_step(self):
        fault()
        return real_byte_step(self)

    real_byte_logprobs = ByteRequestState._logprobs

    def byte_logprobs(self, prefix):
        time.sleep(byte_delay)
        return real_byte_logprobs(self, prefix)

    hf_engine.run_step = run_step
    ByteRequestState.step = byte_step
    if byte_delay:
        ByteRequestState._logprobs = byte_logprobs


_install()
