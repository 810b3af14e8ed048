"""The master's Prometheus metrics, read from the switch and the broker
when scraped.

One family per quantity, told apart by labels, in base units, as the
Prometheus naming guide asks: an endpoint's traffic is
``docknet_endpoint_bytes_total{endpoint, tenant, direction, path}`` whether
it went through the switch, over fast channels or over peer links, and its
drops are
``docknet_endpoint_dropped_frames_total{reason}``. ``direction`` is the
endpoint's point of view (``transmit``: it sent them). prometheus_client
writes the exposition format, HELP and TYPE lines and escapes label values
(endpoint and tenant names are the users').

Addresses are no label of the traffic families: an endpoint is its name,
and a label that changes when an endpoint comes back at another address
would start new series. ``docknet_endpoint_info`` (always 1) carries each
attached endpoint's ``address`` and ``address6`` ("" without IPv6), one
series per endpoint, for joining on ``endpoint``. ``docknet_uplink_info``
(always 1) names the uplink's ``pmd`` and the one an ``iface:`` uplink fell
back from (``fallback_from``, "" for none); the reason is in the status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .broker import FastTraffic

if TYPE_CHECKING:
    from .control_server import ControlServer

__all__ = ["DockNetCollector", "DROP_REASONS"]

# Port counter -> the reason label of a dropped frame.
DROP_REASONS = {
    "drop_ring_full": "ring_full",
    "drop_no_route": "no_route",
    "drop_spoofed": "spoofed",
    "drop_malformed": "malformed",
    "drop_policy": "policy",
    "ingress_dropped": "ingress_queue_full",
    "fault_dropped": "fault_injected",
}

# Port counter -> (direction, what happened) of frames the token buckets held.
LIMITED = {
    "egress_delayed": ("transmit", "delayed"),
    "ingress_delayed": ("receive", "delayed"),
}

FAULTS = {"fault_duplicated": "duplicated", "fault_reordered": "reordered", "fault_corrupted": "corrupted"}

_EP = ["endpoint", "tenant"]


class DockNetCollector(Collector):
    def __init__(self, ctl: ControlServer) -> None:
        self.ctl = ctl

    def collect(self) -> Iterator[Metric]:
        ctl = self.ctl
        sw = ctl.switch.counters()
        yield CounterMetricFamily("docknet_switch_loops", "Iterations of the switch thread's loop.",
                                  value=sw["loops"])
        yield CounterMetricFamily("docknet_switch_busy_loops", "Switch loop iterations that moved a frame.",
                                  value=sw["busy_loops"])
        yield CounterMetricFamily("docknet_switch_sleeps", "Times the switch thread went to sleep on its doorbells.",
                                  value=sw["sleeps"])
        yield CounterMetricFamily("docknet_switch_busy_seconds",
                                  "Time the switch thread spent in iterations that moved frames.",
                                  value=sw["busy_ns"] / 1e9)
        yield CounterMetricFamily("docknet_switch_spin_seconds",
                                  "Time the switch thread spent spinning with nothing to do before it slept or work came.",
                                  value=sw["spin_ns"] / 1e9)
        yield CounterMetricFamily("docknet_switch_run_seconds", "Time the switch thread has run.",
                                  value=sw["run_ns"] / 1e9)
        yield GaugeMetricFamily("docknet_switch_free_mbufs", "Free buffers in the switch's mbuf pool.",
                                value=sw["pool_free"])
        yield GaugeMetricFamily("docknet_endpoints_attached", "Endpoints whose process is attached.",
                                value=len(ctl.endpoints))
        yield GaugeMetricFamily("docknet_endpoints_registered", "Endpoints registered with the master.",
                                value=len(ctl.registry.endpoints))

        frames = CounterMetricFamily("docknet_endpoint_frames", "Frames an endpoint sent or received "
                                     "through the switch.", labels=[*_EP, "direction"])
        octets = CounterMetricFamily("docknet_endpoint_bytes", "Bytes an endpoint sent or received, by path: "
                                     "through the switch (frames), over fast channels (stream bytes) or over "
                                     "peer links (frames).",
                                     labels=[*_EP, "direction", "path"])
        dropped = CounterMetricFamily("docknet_endpoint_dropped_frames", "Frames to or from an endpoint that the "
                                      "switch dropped, by reason.", labels=[*_EP, "reason"])
        limited = CounterMetricFamily("docknet_endpoint_limited_frames", "Frames an endpoint's rate limit held "
                                      "back until its token bucket refilled.", labels=[*_EP, "direction"])
        faults = CounterMetricFamily("docknet_endpoint_faulted_frames", "Frames to an endpoint changed by "
                                     "fault injection (tests), by fault.", labels=[*_EP, "fault"])
        resets = CounterMetricFamily("docknet_endpoint_resets_sent", "TCP resets the switch sent on behalf of an "
                                     "absent endpoint.", labels=_EP)
        wakeups = CounterMetricFamily("docknet_endpoint_wakeups", "Doorbells the switch rang to wake an "
                                      "endpoint's process.", labels=_EP)
        link_up = GaugeMetricFamily("docknet_endpoint_link_up", "Whether the endpoint's process has its link "
                                    "mapped (1) or not (0).", labels=_EP)
        processes = GaugeMetricFamily("docknet_endpoint_processes", "Processes attached to the endpoint (each "
                                      "with its own link, sharing its address).", labels=_EP)
        writes = CounterMetricFamily("docknet_endpoint_fast_writes", "Writes (transport.write calls that "
                                     "moved bytes) an endpoint made, or its peers made to it, over fast channels: "
                                     "its messages, where a stream has no frames.", labels=[*_EP, "direction"])
        info = GaugeMetricFamily("docknet_endpoint_info", "An attached endpoint's addresses (always 1; address6 "
                                 "is empty without IPv6).", labels=[*_EP, "address", "address6"])
        fast = ctl.broker.traffic_by_endpoint()
        peer = ctl.peer_links.traffic_by_endpoint()
        for name, ep in sorted(ctl.endpoints.items()):
            try:
                c = ctl.switch.port_counters(ep.slot)
            except OSError:
                continue  # detaching right now
            who = [name, ep.tenant]
            info.add_metric([*who, ep.address, ep.address6 or ""], 1)
            frames.add_metric([*who, "transmit"], c["rx_frames"])
            frames.add_metric([*who, "receive"], c["tx_frames"])
            octets.add_metric([*who, "transmit", "switch"], c["rx_bytes"])
            octets.add_metric([*who, "receive", "switch"], c["tx_bytes"])
            t = fast.get(name) or FastTraffic()
            octets.add_metric([*who, "transmit", "fast"], t.sent_bytes)
            octets.add_metric([*who, "receive", "fast"], t.received_bytes)
            peer_tx, peer_rx = peer.get(name, (0, 0))
            octets.add_metric([*who, "transmit", "peer"], peer_tx)
            octets.add_metric([*who, "receive", "peer"], peer_rx)
            writes.add_metric([*who, "transmit"], t.sent_writes)
            writes.add_metric([*who, "receive"], t.received_writes)
            for key, reason in DROP_REASONS.items():
                dropped.add_metric([*who, reason], c[key])
            for key, (direction, _) in LIMITED.items():
                limited.add_metric([*who, direction], c[key])
            for key, fault in FAULTS.items():
                faults.add_metric([*who, fault], c[key])
            resets.add_metric(who, c["resets_sent"])
            wakeups.add_metric(who, c["wakeups"])
            link_up.add_metric(who, c["link_up"])
            processes.add_metric(who, len(ep.members))
        yield from (info, frames, octets, writes, dropped, limited, faults, resets, wakeups, link_up, processes)

        fc = ctl.broker.stats()
        yield CounterMetricFamily("docknet_fast_channels_made", "Fast channels the broker made.", value=fc["made"])
        yield CounterMetricFamily("docknet_fast_channels_released", "Fast channels released after both sides "
                                  "closed or died.", value=fc["released"])
        refused = CounterMetricFamily("docknet_fast_channels_refused", "Fast-channel requests refused, by reason.",
                                      labels=["reason"])
        refused.add_metric(["policy"], fc["refused_by_policy"])
        yield refused
        yield GaugeMetricFamily("docknet_fast_channels_open", "Fast channels open now.", value=fc["open"])
        yield GaugeMetricFamily("docknet_fast_channels_memory_bytes", "Shared memory held by open fast channels.",
                                value=fc["memory"])
        yield CounterMetricFamily("docknet_fast_channels_bytes", "Bytes carried by fast channels, both ways.",
                                  value=fc["bytes"])

        pl = ctl.peer_links.stats()
        yield GaugeMetricFamily("docknet_peer_links_up", "Peer links up now (frames between two endpoints that "
                                "bypass the switch).", value=pl["up"])
        yield CounterMetricFamily("docknet_peer_links_made", "Peer links the master set up.", value=pl["made"])
        yield CounterMetricFamily("docknet_peer_links_removed", "Peer links taken down.", value=pl["removed"])
        yield CounterMetricFamily("docknet_peer_links_bytes", "Bytes peer links carried, both ways (frames with "
                                  "their ring records).", value=pl["bytes"])

        up = ctl.switch.uplink()
        if up is not None:
            ui = GaugeMetricFamily("docknet_uplink_info", "The uplink's port (always 1): its pmd, and the one it "
                                   "fell back from (empty: none).", labels=["pmd", "fallback_from"])
            fell = up["pmd_fallback"]
            ui.add_metric([up["pmd"], fell.split(":", 1)[0] if fell else ""], 1)
            yield ui
            uf = CounterMetricFamily("docknet_uplink_frames", "Frames through the uplink port.",
                                     labels=["direction"])
            uf.add_metric(["transmit"], up["tx_frames"])
            uf.add_metric(["receive"], up["rx_frames"])
            yield uf
            ud = CounterMetricFamily("docknet_uplink_dropped_frames", "Frames the uplink dropped, by reason.",
                                     labels=["reason"])
            ud.add_metric(["unresolved"], up["unresolved_dropped"])
            ud.add_metric(["other"], up["drop_other"])
            yield ud
