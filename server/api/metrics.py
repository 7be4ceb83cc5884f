"""Prometheus metrics (names prefixed ``braid:``), one registry per app."""
from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..engines.base import EngineStats
from ..models.supervisor import EngineHealth, EngineState

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)


class _EngineGauges:
    """Running/waiting gauges read from the engines at scrape time (never stale)."""

    def __init__(self, stats: Callable[[], dict[str, EngineStats]]) -> None:
        self._stats = stats

    def collect(self):
        running = GaugeMetricFamily("braid:num_requests_running", "Sequences running in the engine.", labels=["model_name"])
        waiting = GaugeMetricFamily("braid:num_requests_waiting", "Sequences waiting for a slot.", labels=["model_name"])
        for model, stats in self._stats().items():
            running.add_metric([model], stats.running)
            waiting.add_metric([model], stats.waiting)
        yield running
        yield waiting


class _EngineHealthMetrics:
    """Each model's engine state (one series per state, 1 for the current one) and restart count."""

    def __init__(self, health: Callable[[], dict[str, EngineHealth]]) -> None:
        self._health = health

    def collect(self):
        state = GaugeMetricFamily("braid:engine_state", "1 for the state the model's engine is in, else 0.",
                                  labels=["model_name", "state"])
        restarts = CounterMetricFamily("braid:engine_restarts", "Engine restart attempts after a failure.",
                                       labels=["model_name"])
        for model, health in self._health().items():
            for name in EngineState:
                state.add_metric([model, name.value], 1.0 if health.state is name else 0.0)
            restarts.add_metric([model], health.restarts)
        yield state
        yield restarts


class Metrics:
    def __init__(self, engine_stats: Callable[[], dict[str, EngineStats]],
                 engine_health: Callable[[], dict[str, EngineHealth]]) -> None:
        self.registry = CollectorRegistry()
        labels = ["model_name"]
        self.ttft = Histogram("braid:time_to_first_token_seconds", "Time to first token.", labels,
                              buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.itl = Histogram("braid:inter_token_latency_seconds", "Time between generated tokens.", labels,
                             buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.e2e = Histogram("braid:e2e_request_latency_seconds", "Request latency, arrival to last token.", labels,
                             buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.prompt_tokens = Counter("braid:prompt_tokens", "Prompt tokens processed.", labels, registry=self.registry)
        self.generation_tokens = Counter("braid:generation_tokens", "Tokens generated.", labels, registry=self.registry)
        self.registry.register(_EngineGauges(engine_stats))
        self.registry.register(_EngineHealthMetrics(engine_health))

    def add_model(self, model: str) -> None:
        """Create a model's series up front so they read 0 rather than being absent."""
        for metric in (self.ttft, self.itl, self.e2e, self.prompt_tokens, self.generation_tokens):
            metric.labels(model)
