"""cluster/grafana/fabray.json queries only metrics (and labels) that fabray's serving code exports.

The exported names are read from the source (every `_metric("Kind", "fabray_...", ..., tags)`
call under fabray/serve/) and turned into the names Prometheus scrapes from Ray 2.60: Ray's
OpenTelemetry recorder names each custom metric `ray_<name>`
(ray/_private/telemetry/open_telemetry_metric_recorder.py, NAMESPACE = "ray"), and the Prometheus
exposition adds `_total` to counters and `_bucket` / `_sum` / `_count` to histograms. The last
test checks those suffix rules against the exporter library Ray uses, without Ray.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "cluster" / "grafana" / "fabray.json"
SERVE_SOURCES = sorted((ROOT / "fabray" / "serve").rglob("*.py"))

METRIC_CALL = re.compile(
    r'_metric\(\s*"(?P<kind>Counter|Gauge|Histogram)"\s*,\s*"(?P<name>fabray_[a-z0-9_]+)"\s*,'
    r'\s*"[^"]*"\s*(?:,\s*\((?P<tags>[^)]*)\))?'
)
#: Labels Ray Serve adds to every custom metric of a replica, and the histogram's bucket label.
SERVE_LABELS = {"deployment", "replica", "application", "le"}
#: PromQL words that are not metric names.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "by", "without", "rate", "irate", "increase",
    "histogram_quantile", "clamp_min", "clamp_max", "label_values", "on", "ignoring", "and", "or",
    "unless", "offset", "bool", "topk", "bottomk", "e",
}
#: Panels issue 16 asks for (alerts: a text panel until an alerts metric is exported).
REQUIRED_TITLES = ("Request rate", "Latency p50 / p95 / p99", "Windows scored", "Degraded share",
                   "Live model version", "Alerts raised")


def exported_metrics() -> dict[str, set[str]]:
    """{Prometheus series name: its labels} for every metric the serving code creates."""
    found: dict[str, set[str]] = {}
    for path in SERVE_SOURCES:
        for m in METRIC_CALL.finditer(path.read_text()):
            tags = set(re.findall(r'"([a-z_]+)"', m["tags"] or "")) | SERVE_LABELS
            base = f"ray_{m['name']}"
            suffixes = {"Counter": ("_total",), "Gauge": ("",), "Histogram": ("_bucket", "_sum", "_count")}
            for suffix in suffixes[m["kind"]]:
                found[base + suffix] = tags
    return found


def _panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows
    return out


def queries(dashboard: dict) -> list[str]:
    exprs = [t["expr"] for p in _panels(dashboard) for t in p.get("targets", []) if t.get("expr")]
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if var.get("type") == "query" and query:
            exprs.append(query)
    return exprs


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label matchers, strings, ranges removed)."""
    text = re.sub(r"label_values\(\s*(\w+)\s*,\s*\w+\s*\)", r"\1", expr)  # label_values(metric, label)
    text = re.sub(r'"[^"]*"', "", text)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)
    text = re.sub(r"\$\w+", "", text)
    tokens = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return {t for t in tokens if t not in PROMQL_WORDS}


def label_names(expr: str) -> set[str]:
    """Labels used in `by (...)` clauses, label matchers and label_values(metric, label)."""
    labels = set()
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        labels |= {x.strip() for x in group.split(",") if x.strip()}
    for matcher in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matcher))
    labels |= set(re.findall(r"label_values\(\s*\w+\s*,\s*(\w+)\s*\)", expr))
    return labels


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_the_source_exports_the_metrics_the_dashboard_is_built_on():
    exported = exported_metrics()
    for name in ("ray_fabray_http_requests_total", "ray_fabray_http_latency_ms_bucket",
                 "ray_fabray_windows_scored_total", "ray_fabray_model_version"):
        assert name in exported, sorted(exported)


def test_every_query_names_an_exported_metric_and_its_labels(dashboard):
    exported = exported_metrics()
    exprs = queries(dashboard)
    assert len(exprs) >= 8
    used = set()
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        unknown = names - set(exported)
        assert not unknown, f"{expr!r} reads {sorted(unknown)}, not exported; exported: {sorted(exported)}"
        allowed = set.union(*(exported[n] for n in names))
        stray = label_names(expr) - allowed
        assert not stray, f"{expr!r} uses labels {sorted(stray)} its metrics do not carry ({sorted(allowed)})"
        used |= names
    # Every exported series family is on the dashboard.
    assert {n.removesuffix("_bucket") for n in used} >= {
        n.removesuffix("_bucket") for n in exported if not n.endswith(("_sum", "_count"))
    }


def test_latency_percentiles_come_from_the_histogram_buckets(dashboard):
    exprs = queries(dashboard)
    for q in ("0.5", "0.95", "0.99"):
        assert any(re.search(rf"histogram_quantile\({q},.*by \(le\).*ray_fabray_http_latency_ms_bucket", e)
                   for e in exprs), q


def test_the_dashboard_has_the_panels_and_a_prometheus_datasource_variable(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    titles = [p["title"] for p in _panels(dashboard)]
    for wanted in REQUIRED_TITLES:
        assert any(t.startswith(wanted) for t in titles), (wanted, titles)
    for panel in _panels(dashboard):
        if panel.get("targets"):
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids))


def test_the_alerts_panel_counts_the_alerts_the_live_feed_raises_per_zone(dashboard):
    assert "ray_fabray_alerts_raised_total" in exported_metrics()
    alerts = next(p for p in _panels(dashboard) if p["title"].startswith("Alerts raised"))
    assert alerts["type"] == "timeseries"
    assert any("ray_fabray_alerts_raised_total" in t["expr"] and "by (zone)" in t["expr"] for t in alerts["targets"])


def test_prometheus_names_follow_the_exporter_ray_uses():
    """Counters gain `_total`, histograms `_bucket`/`_sum`/`_count`, gauges keep their name
    (opentelemetry-exporter-prometheus, as Ray 2.60's metrics agent serves them)."""
    prometheus_client = pytest.importorskip("prometheus_client")
    exporter = pytest.importorskip("opentelemetry.exporter.prometheus")
    from opentelemetry.metrics import Observation
    from opentelemetry.sdk.metrics import MeterProvider

    reader = exporter.PrometheusMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        meter = provider.get_meter("fabray-test")
        meter.create_observable_counter("ray_fabray_test_c", callbacks=[lambda _: [Observation(3, {"route": "/x"})]])
        meter.create_observable_gauge("ray_fabray_test_g", callbacks=[lambda _: [Observation(2)]])
        meter.create_histogram("ray_fabray_test_h", explicit_bucket_boundaries_advisory=[1.0, 2.0]).record(1.5)
        registry = prometheus_client.CollectorRegistry()
        registry.register(reader._collector)  # noqa: SLF001 - the collector the reader serves
        text = prometheus_client.generate_latest(registry).decode()
    finally:
        provider.shutdown()
    series = set(re.findall(r"^(ray_fabray_test_\w+?)\{", text, flags=re.M))
    assert series == {"ray_fabray_test_c_total", "ray_fabray_test_g", "ray_fabray_test_h_bucket",
                      "ray_fabray_test_h_sum", "ray_fabray_test_h_count"}, text
