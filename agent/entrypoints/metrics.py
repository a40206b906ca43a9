"""Prometheus metrics of a serving process (`GET /metrics`): turns, their latency by kind, the LLM
queue, fallbacks and refusals. One registry per app, so tests can build many apps.

A turn is `degraded="yes"` when any of its LLM calls went without the model (the turn's budget ran
out in the queue, the queue was full, the circuit breaker was open, the server timed out or was
down) or the ranker dropped the model's answer; `reason` says which (agent.engines.scheduler:
degraded_reason), "" otherwise. Labels come from fixed sets, never from messages, so no URL or key
can reach them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from agent.chat.agent import Agent, TurnResult

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 60.0)


class ServingMetrics:
    def __init__(self, agent: Agent, limits=None) -> None:
        self.registry = CollectorRegistry()
        self.turns = Counter("aisle_turns", "Chat turns answered", ["catalog", "action", "degraded", "reason"], registry=self.registry)
        self.latency = Histogram("aisle_turn_seconds", "Turn latency (server side)", ["action"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.fallbacks = Counter("aisle_llm_fallbacks", "Turns answered (in part) without the LLM, by reason", ["reason"], registry=self.registry)
        self.registry.register(_LiveCollector(agent, limits))
        agent.on_turn.append(self.observe)

    def observe(self, result: TurnResult) -> None:
        reason = (result.debug or {}).get("degraded") or ""
        self.turns.labels(result.catalog, result.action, "yes" if reason else "no", reason).inc()
        self.latency.labels(result.action).observe(result.timings_ms.get("total", 0.0) / 1e3)
        if reason:
            self.fallbacks.labels(reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LiveCollector:
    """Values read at scrape time: the LLM queue, and refusals counted by their owners."""

    def __init__(self, agent: Agent, limits) -> None:
        self.agent = agent
        self.limits = limits

    def collect(self):
        s = self.agent.scheduler
        yield GaugeMetricFamily("aisle_llm_queue_depth", "LLM calls waiting for the model", value=s.depth)
        yield GaugeMetricFamily("aisle_llm_running", "LLM calls running", value=s.running)
        granted = CounterMetricFamily("aisle_llm_calls", "LLM calls by outcome of their wait", labels=["outcome"])
        granted.add_metric(["granted"], s.granted)
        granted.add_metric(["queue_full"], s.rejected_full)
        granted.add_metric(["budget_exceeded"], s.timed_out)
        yield granted
        yield CounterMetricFamily("aisle_llm_wait_seconds", "Time spent waiting for the model", value=s.wait_seconds_total)
        if self.limits is not None:
            refused = CounterMetricFamily("aisle_rate_limited", "Requests answered 429", labels=["scope"])
            for scope, n in self.limits.refused.items():
                refused.add_metric([scope], n)
            yield refused
