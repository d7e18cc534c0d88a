"""The Prometheus families of a ``Metrics`` (``proxy/metrics.py``), made at scrape time.

Names follow Prometheus' conventions: ``_total`` counters (the suffix is prometheus-client's to
add), ``_seconds`` and ``_bytes`` units, bounded labels (``route`` a rule's path pattern or
``none``, ``outcome`` one of ``metrics.OUTCOMES``, ``class`` 1xx-5xx, ``kind`` a purge kind).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tina4_sidecar.proxy.build_info import build_info

if TYPE_CHECKING:
    from tina4_sidecar.proxy.metrics import Metrics

PREFIX = "tina4_sidecar"
NO_ROUTE = "none"


class MetricsCollector(Collector):
    """Turns a ``Metrics``' numbers into Prometheus families at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        metrics = self._metrics
        requests = CounterMetricFamily(
            f"{PREFIX}_requests",
            "Requests answered, by cache outcome and rule path pattern ('none': no cached rule).",
            labels=("outcome", "route"),
        )
        for slot in metrics._slots.values():
            requests.add_metric((slot.outcome, slot.route or NO_ROUTE), slot.count)
        yield requests

        durations = HistogramMetricFamily(
            f"{PREFIX}_request_duration_seconds",
            "Time the sidecar took to answer a request, by cache outcome.",
            labels=("outcome",),
        )
        for outcome, buckets in metrics._durations.items():
            durations.add_metric((outcome,), buckets.cumulative(), buckets.sum)
        yield durations

        fetches = CounterMetricFamily(
            f"{PREFIX}_origin_fetches",
            "Requests sent to the app for the cache (misses, refreshes), by the app's status.",
            labels=("status",),
        )
        for status, count in sorted(metrics._origin_statuses.items()):
            fetches.add_metric((str(status),), count)
        yield fetches

        origin = HistogramMetricFamily(
            f"{PREFIX}_origin_duration_seconds", "Time the app took to answer a fetch for the cache."
        )
        origin.add_metric((), metrics._origin_durations.cumulative(), metrics._origin_durations.sum)
        yield origin

        yield CounterMetricFamily(
            f"{PREFIX}_origin_received_bytes",
            "Body bytes received from the app, on both transports: fetches for the cache, forwarded "
            "answers, the manifest.",
            value=metrics.origin_bytes,
        )

        store = HistogramMetricFamily(
            f"{PREFIX}_store_duration_seconds",
            "Time a call of the response store took (failed and timed-out ones included), by operation.",
            labels=("operation",),
        )
        for operation, buckets in sorted(metrics._store_durations.items()):
            store.add_metric((operation,), buckets.cumulative(), buckets.sum)
        yield store

        info = build_info()
        build = GaugeMetricFamily(
            f"{PREFIX}_build_info",
            "Always 1; the labels say which sidecar this is (its version, Python's, aiohttp's, uvloop's).",
            labels=tuple(info),
        )
        build.add_metric(tuple(info.values()), 1)
        yield build

        yield CounterMetricFamily(
            f"{PREFIX}_coalesced_waiters",
            "Requests that waited for another request's fetch instead of asking the app.",
            value=metrics.coalesced,
        )

        yield CounterMetricFamily(
            f"{PREFIX}_connections_refused",
            "Client connections closed at once because TINA4_SIDECAR_MAX_CONNECTIONS were open.",
            value=metrics.connections_refused,
        )

        yield CounterMetricFamily(
            f"{PREFIX}_unreadable_entries",
            "Reads of stored entries taken as a miss because this sidecar cannot read them (written by "
            "another format version during a rolling upgrade, or corrupt); the fetch overwrites them.",
            value=metrics.unreadable_entries,
        )

        classes = CounterMetricFamily(
            f"{PREFIX}_responses",
            "Answers sent to clients, by status class (502 and 504 from the sidecar count as 5xx).",
            labels=("class",),
        )
        for index, count in enumerate(metrics.status_classes):
            if index:
                classes.add_metric((f"{index}xx",), count)
        yield classes

        sent = CounterMetricFamily(
            f"{PREFIX}_sent_bytes",
            "Bytes sent to clients (headers included), by cache outcome: hit and stale bytes never "
            "reached the app; miss, pass and bypass bytes came from it.",
            labels=("outcome",),
        )
        for outcome, size in sorted(metrics.bytes_sent.items()):
            sent.add_metric((outcome,), size)
        yield sent

        purges = CounterMetricFamily(
            f"{PREFIX}_purges", "Purges ordered through the admin API, by kind.", labels=("kind",)
        )
        for kind, count in sorted(metrics.purges.items()):
            purges.add_metric((kind,), count)
        yield purges

        yield CounterMetricFamily(
            f"{PREFIX}_fast_path_hits",
            "HITs answered by the protocol-level fast path from prebuilt bytes (a part of outcome=hit).",
            value=metrics.fast_hits,
        )

        gauges = metrics._gauges
        if gauges is None:
            return
        yield GaugeMetricFamily(
            f"{PREFIX}_in_flight_requests", "Requests being answered now.", value=gauges.in_flight
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_workers",
            "Worker processes this view sums (1 without --workers).",
            value=gauges.workers,
        )
        if gauges.app_up is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_app_up",
                "1 when the app answered the last readiness check (below 500 on its manifest path), else 0.",
                value=int(gauges.app_up),
            )
        if gauges.manifest_loaded_at is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_manifest_last_success_timestamp_seconds",
                "Unix time of the last good manifest from the app.",
                value=gauges.manifest_loaded_at,
            )
        yield CounterMetricFamily(
            f"{PREFIX}_store_errors",
            "Store calls that failed or timed out (each request went on without the cache).",
            value=gauges.store_errors,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_store_fallback",
            "1 while the file store stands in for the configured store, else 0.",
            value=int(gauges.fallback),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_cache_entries",
            "Keys in the store's response layer (entries and purge tokens; memcached: approximate).",
            value=gauges.entries,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_manifest_rules", "Caching rules in force.", value=gauges.manifest_rules
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_manifest_ok",
            "1 when the last manifest refresh succeeded, else 0 (the last good rules stay in force).",
            value=int(gauges.manifest_ok),
        )
