"""The small-batch CPU linear: the same product as ``F.linear`` (float64 reference), on the layers
it should touch only, and the engine option that turns it off."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from braid.server.engines.hf import HFEngine
from braid.server.kernels.cpu_linear import MAX_ROWS, install_small_batch_linears, small_batch_linear


@pytest.fixture(autouse=True)
def two_threads():
    """The small-batch path runs only with more than one torch thread (the test suite may run with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("rows", [1, 2, 3, 8, MAX_ROWS, MAX_ROWS + 1])
@pytest.mark.parametrize("with_bias", [False, True])
def test_equals_the_float64_product(rows, with_bias):
    g = torch.Generator().manual_seed(rows)
    weight = torch.randn(48, 40, generator=g)
    bias = torch.randn(48, generator=g) if with_bias else None
    x = torch.randn(1, rows, 40, generator=g)  # the engine's packed [1, tokens, hidden] layout
    got = small_batch_linear(x, weight, bias)
    want = F.linear(x.double(), weight.double(), None if bias is None else bias.double())
    assert got.shape == (1, rows, 48) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-4)


def test_each_row_is_its_own_product():
    """A row's result must not depend on its neighbours (padding one row to two, transposes)."""
    g = torch.Generator().manual_seed(7)
    weight, x = torch.randn(30, 20, generator=g), torch.randn(5, 20, generator=g)
    together = small_batch_linear(x, weight)
    for i in range(5):
        torch.testing.assert_close(small_batch_linear(x[i:i + 1], weight)[0], together[i], rtol=0, atol=1e-5)


def test_empty_and_large_inputs_use_f_linear_exactly():
    weight = torch.randn(16, 8)
    big = torch.randn(MAX_ROWS + 5, 8)
    assert torch.equal(small_batch_linear(big, weight), F.linear(big, weight))
    assert small_batch_linear(torch.randn(0, 8), weight).shape == (0, 16)


def test_one_thread_keeps_f_linear_exactly(monkeypatch):
    g = torch.Generator().manual_seed(3)
    weight, x = torch.randn(48, 40, generator=g), torch.randn(1, 3, 40, generator=g)
    calls = []
    real_linear = F.linear
    monkeypatch.setattr(F, "linear", lambda *args: calls.append(1) or real_linear(*args))
    small_batch_linear(x, weight)
    assert calls == []  # 2 threads: the GEMM path (whose bits may or may not differ on a given CPU)
    torch.set_num_threads(1)
    assert torch.equal(small_batch_linear(x, weight), real_linear(x, weight))
    assert calls == [1]


def test_install_touches_float32_cpu_linears_only():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4).double(), nn.Embedding(5, 8))
    plain = model[0].forward
    assert install_small_batch_linears(model) == 1
    assert model[0].forward != plain and "forward" in vars(model[0])
    assert "forward" not in vars(model[2])  # float64: left alone
    x = torch.randn(3, 8)
    torch.testing.assert_close(model[0](x), F.linear(x, model[0].weight, model[0].bias), rtol=0, atol=1e-5)


@pytest.mark.parametrize("enabled", [True, False])
def test_engine_option(tiny_llama_dir, enabled):
    eng = HFEngine("tiny", str(tiny_llama_dir), max_num_seqs=2, dtype="float32", small_batch_linear=enabled)
    eng._load()
    linears = [m for m in eng.runner.model.modules() if type(m) is nn.Linear]
    assert linears and all(("forward" in vars(m)) == enabled for m in linears)
