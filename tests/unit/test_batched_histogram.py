"""BatchedHistogram exposes what a prometheus_client Histogram fed the same values one by one does."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from dataflows.runtime.batched_histogram import BatchedHistogram

BUCKETS = (0.005, 0.01, 0.025, 0.1, 1.0)
VALUES = {
    ("signal",): [0.0, 0.004, 0.005, 0.0051, 0.01, 0.3, 1.0, 7.5],  # bounds exactly, and above the last
    ("filled",): [0.02, 0.02, 0.099],
}


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_batched_observations_expose_what_one_by_one_observations_do() -> None:
    reference_registry, batched_registry = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("lat_seconds", "Latency", ["stage"], buckets=BUCKETS, registry=reference_registry)
    batched = BatchedHistogram("lat_seconds", "Latency", ["stage"], BUCKETS, registry=batched_registry)
    for labels, values in VALUES.items():
        for value in values:
            reference.labels(*labels).observe(value)
        batched.observe(labels, values[:3])  # in two calls: the counts add up
        batched.observe(labels, values[3:])

    samples = _samples(batched_registry)
    assert samples == _samples(reference_registry)
    assert samples[("lat_seconds_bucket", (("le", "0.005"), ("stage", "signal")))] == 3.0  # 0.005 is in
    assert samples[("lat_seconds_bucket", (("le", "+Inf"), ("stage", "signal")))] == 8.0
    assert samples[("lat_seconds_count", (("stage", "filled"),))] == 3.0
    assert samples[("lat_seconds_sum", (("stage", "filled"),))] == pytest.approx(0.139)
    text = generate_latest(batched_registry).decode()
    assert "# TYPE lat_seconds histogram" in text
    assert 'lat_seconds_bucket{le="0.025",stage="filled"} 2.0' in text


def test_no_values_make_no_series_and_labels_must_match() -> None:
    registry = CollectorRegistry()
    batched = BatchedHistogram("quiet_seconds", "Quiet", ["stage", "input"], BUCKETS, registry=registry)
    batched.observe(("signal", "market.ticks"), [])
    assert _samples(registry) == {}
    with pytest.raises(ValueError, match=r"quiet_seconds: labels \('signal',\) do not match"):
        batched.observe(("signal",), [0.1])


@pytest.mark.parametrize("buckets", [(), (0.1, 0.1), (1.0, 0.5), (0.1, float("inf"))])
def test_buckets_must_be_finite_and_increasing(buckets: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="bad_seconds: buckets must be finite and strictly increasing"):
        BatchedHistogram("bad_seconds", "Bad", ["stage"], buckets, registry=None)
