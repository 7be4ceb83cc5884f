"""Fault injection for a test server (put this folder on PYTHONPATH): patches the transformers
engine's step, the one place a test changes the code it runs.

BRAID_TEST_STEP_DELAY_S slows every step (so streams are surely running when the fault comes);
while the file named by BRAID_TEST_FAULT_FILE exists, the next step removes it and raises.
"""
import os
import time


def _install() -> None:
    fault_file = os.environ.get("BRAID_TEST_FAULT_FILE")
    delay = float(os.environ.get("BRAID_TEST_STEP_DELAY_S", "0"))
    if not fault_file and not delay:
        return
    from braid.server.engines.hf import engine as hf_engine

    real_step = hf_engine.run_step

    def run_step(*args, **kwargs):
        if delay:
            time.sleep(delay)
        if fault_file and os.path.exists(fault_file):
            os.remove(fault_file)
            raise RuntimeError("injected fault")
        return real_step(*args, **kwargs)

    hf_engine.run_step = run_step


_install()
