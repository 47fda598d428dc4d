"""``/metrics``: one prometheus-client Collector that reads the live state when scraped.

The Modbus and TuyaMCU paths keep their plain counters (link stats, the observed backends);
nothing is converted until Prometheus asks, so metrics cost nothing per request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gateway.regmap.fill import FILL_PREFIX
from gateway.tuya.link import LinkState
from gateway.web.observe import ObservedBackend, WriteTimes
from gateway.web.views import WatchedUnit, dp_label, point_readings

__all__ = ["GatewayCollector", "metrics_registry", "render_metrics"]

PREFIX = "tuya_gateway_"
_LINK_COUNTERS = (
    ("mcu_reboots", "MCU reboots the link noticed"),
    ("frames_received", "TuyaMCU frames received from the MCU"),
    ("frames_sent", "TuyaMCU frames sent to the MCU"),
    ("checksum_errors", "TuyaMCU frames dropped for a bad checksum"),
)


class GatewayCollector(Collector):
    """Every tuya_gateway_* metric, computed from the units at scrape time."""

    def __init__(
        self,
        units: Mapping[int, WatchedUnit],
        observed: Mapping[int, ObservedBackend],
        write_times: WriteTimes,
        connections: Callable[[], Mapping[str, int]],
    ) -> None:
        self._units = units
        self._observed = observed
        self._write_times = write_times
        self._connections = connections

    def collect(self) -> Iterator[Metric]:
        yield from self._links()
        yield from self._datapoints()
        yield from self._modbus()
        yield self._histogram()
        connections = GaugeMetricFamily(
            PREFIX + "modbus_connections", "open Modbus client connections", labels=["listener"]
        )
        for listener, count in sorted(self._connections().items()):
            connections.add_metric([listener], count)
        yield connections

    def _links(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(PREFIX + "link_up", "1 when the link is READY", labels=["unit"])
        state = GaugeMetricFamily(
            PREFIX + "link_state", "1 for the link's current state", labels=["unit", "state"]
        )
        counters = [
            CounterMetricFamily(PREFIX + name, text, labels=["unit"])
            for name, text in _LINK_COUNTERS
        ]
        for unit_id, unit in sorted(self._units.items()):
            label, link = str(unit_id), unit.link
            up.add_metric([label], 1 if link.state is LinkState.READY else 0)
            for each in LinkState:
                state.add_metric([label, each.name], 1 if link.state is each else 0)
            for counter, (name, _) in zip(counters, _LINK_COUNTERS, strict=True):
                counter.add_metric([label], getattr(link.stats, name))
        yield up
        yield state
        yield from counters

    def _datapoints(self) -> Iterator[Metric]:
        age = GaugeMetricFamily(
            PREFIX + "dp_age_seconds", "seconds since the DP's last report", labels=["unit", "dp"]
        )
        value = GaugeMetricFamily(
            PREFIX + "point_value",
            "the measured value of a map point (absent while stale)",
            labels=["unit", "point"],
        )
        for unit_id, unit in sorted(self._units.items()):
            snapshot = unit.cache.snapshot()
            for dpid in sorted(snapshot.entries):
                seconds = snapshot.age(dpid)
                if seconds is not None:
                    age.add_metric([str(unit_id), dp_label(unit.register_map, dpid)], seconds)
            for reading in point_readings(unit, snapshot):
                if reading.point.name.startswith(FILL_PREFIX):
                    continue  # a meter profile's gap constants: no measurement
                if isinstance(reading.value, float) and not reading.stale:
                    value.add_metric([str(unit_id), reading.point.name], reading.value)
        yield age
        yield value

    def _modbus(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            PREFIX + "modbus_requests",
            "Modbus requests answered, per function code",
            labels=["unit", "function"],
        )
        exceptions = CounterMetricFamily(
            PREFIX + "modbus_exceptions",
            "Modbus exception responses, per function and exception code",
            labels=["unit", "function", "code"],
        )
        for unit_id, observed in sorted(self._observed.items()):
            for function, count in sorted(observed.requests.items()):
                requests.add_metric([str(unit_id), str(function)], count)
            for (function, code), count in sorted(observed.exceptions.items()):
                exceptions.add_metric([str(unit_id), str(function), f"0x{code:02X}"], count)
        yield requests
        yield exceptions

    def _histogram(self) -> Metric:
        times = self._write_times
        histogram = HistogramMetricFamily(
            PREFIX + "write_seconds",
            "confirmed Modbus writes: from the request to the MCU's confirming report",
        )
        histogram.add_metric([], times.cumulative(), sum_value=times.total_s)
        return histogram


def metrics_registry(collector: GatewayCollector) -> CollectorRegistry:
    """A registry of the collector alone (not the process-wide default: no globals)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render_metrics(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition format."""
    return generate_latest(registry)
