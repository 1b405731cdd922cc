"""A Prometheus histogram that takes a batch's observations at once.

``prometheus_client.Histogram.observe`` takes two locks per value (its sum,
then its bucket), about a microsecond each time; the live flows observe a
latency or two for every message they publish. :class:`BatchedHistogram`
counts one call's values into buckets in plain Python and merges them under
one lock. It is a custom collector, prometheus_client's public API, and
exposes what a ``Histogram`` with the same name, labels and buckets does:
``<name>_bucket{le}`` (cumulative), ``<name>_count`` and ``<name>_sum``.
It leaves out the ``<name>_created`` timestamps.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate

from prometheus_client import REGISTRY
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString


class BatchedHistogram:
    """A labelled histogram fed many values per call (:meth:`observe`), registered on creation.

    ``buckets`` are the upper bounds, increasing; ``+Inf`` is added. A value
    falls in the first bucket whose bound it does not exceed, as in a
    ``Histogram``.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        bounds = [float(b) for b in buckets]
        if bounds != sorted(set(bounds)) or not bounds or math.isinf(bounds[-1]):
            msg = f"{name}: buckets must be finite and strictly increasing, got {list(buckets)}"
            raise ValueError(msg)
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._bounds = (*bounds, math.inf)
        self._les = [floatToGoString(b) for b in self._bounds]
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe(self, labels: tuple[str, ...], values: Iterable[float]) -> None:
        """Add ``values`` to the series of ``labels`` (one value per label name, in order)."""
        if len(labels) != len(self._labelnames):
            msg = f"{self._name}: labels {labels!r} do not match {self._labelnames!r}"
            raise ValueError(msg)
        bounds = self._bounds
        counts = [0] * len(bounds)
        total = 0.0
        for value in values:
            counts[bisect_left(bounds, value)] += 1
            total += value
        if not any(counts):
            return
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = ([0] * len(bounds), [0.0])
            kept, kept_sum = series
            for i, count in enumerate(counts):
                if count:
                    kept[i] += count
            kept_sum[0] += total

    def describe(self) -> list[HistogramMetricFamily]:
        """The family without samples, so that registering checks the name without collecting."""
        return [HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)]

    def collect(self) -> Iterator[HistogramMetricFamily]:
        """One family: every label set's cumulative buckets, count and sum."""
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)
        with self._lock:
            series = [(labels, list(counts), sums[0]) for labels, (counts, sums) in self._series.items()]
        for labels, counts, total in series:
            family.add_metric(list(labels), list(zip(self._les, accumulate(counts), strict=True)), total)
        yield family
