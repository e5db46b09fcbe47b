#!/usr/bin/env python3
"""Checks the observability wiring of deploy/ offline (run by validate.sh).

Usage: check-observability.py DASHBOARD.json DOCS.md RENDERED.yaml...

1. The Grafana dashboard is valid JSON with what an import needs (title, uid, schemaVersion,
   panels with ids, gridPos, a Prometheus datasource through the DS_PROMETHEUS variable, and
   targets with a PromQL expr), and its panels do not overlap.
2. Every PromQL expression (panels and variables) names only metrics of the metrics contract
   (CONTRACT below, from the observability issue), with only the labels that metric carries
   (plus job and instance, which Prometheus adds, and le on histogram buckets).
3. docs/observability.md lists every metric of the contract.
4. In each rendered overlay, every learnhub container exports spans with a resource whose
   service.version is its image tag and whose pod, namespace and node come from the downward
   API; every service is discoverable for scraping (prometheus.io/* annotations that match its
   ports and METRICS_ADDR); the OTLP endpoint is set and each learnhub NetworkPolicy lets its
   port out; each back end's NetworkPolicy admits scrapes of its metrics port; and a
   Prometheus config shipped in the overlay scrapes every service on the right port.
Needs PyYAML (in the validate.sh virtualenv, a dependency of checkov).
"""
import json
import re
import sys
from urllib.parse import urlparse

import yaml

# The metrics contract: name -> (type, labels). Histograms expose _bucket (with le), _sum and
# _count. process_* come from the metrics-process crate (Linux set).
CONTRACT = {
    "learnhub_build_info": ("gauge", {"service", "version"}),
    "learnhub_rpc_server_duration_seconds": ("histogram", {"rpc_service", "rpc_method", "grpc_code"}),
    "learnhub_rpc_client_duration_seconds": ("histogram", {"peer", "rpc_service", "rpc_method", "grpc_code"}),
    "learnhub_http_server_duration_seconds": ("histogram", {"method", "route", "status"}),
    "learnhub_db_pool_connections": ("gauge", {"service", "state"}),
    "learnhub_db_pool_max_connections": ("gauge", {"service"}),
    "learnhub_db_pool_waits_total": ("counter", {"service"}),
    "learnhub_db_pool_wait_seconds_total": ("counter", {"service"}),
    "learnhub_sql_statements_total": ("counter", {"service", "statement"}),
    "learnhub_sql_duration_seconds": ("histogram", {"service", "statement"}),
    "learnhub_sql_slow_queries_total": ("counter", {"service"}),
    "learnhub_sql_n_plus_one_total": ("counter", {"service", "rpc"}),
    "learnhub_cache_hits_total": ("counter", {"namespace"}),
    "learnhub_cache_misses_total": ("counter", {"namespace"}),
    "learnhub_cache_sets_total": ("counter", {"namespace"}),
    "learnhub_cache_refused_sets_total": ("counter", {"namespace"}),
    "learnhub_cache_invalidations_total": ("counter", {"namespace"}),
    "learnhub_cache_entries_removed_total": ("counter", {"namespace"}),
    "learnhub_cache_errors_total": ("counter", {"namespace"}),
    "learnhub_cache_redis_duration_seconds": ("histogram", {"command"}),
    "learnhub_cache_fallback_active": ("gauge", set()),
    "learnhub_cache_client_breaker_open": ("gauge", {"service"}),
    "learnhub_cache_client_bypasses_total": ("counter", {"service"}),
    "learnhub_cache_near_hits_total": ("counter", {"service", "namespace"}),
    "learnhub_cache_near_misses_total": ("counter", {"service", "namespace"}),
    "learnhub_cache_near_live": ("gauge", {"service"}),
    "learnhub_cache_near_drops_total": ("counter", {"service", "reason"}),
    "learnhub_cache_subscribers": ("gauge", set()),
    "process_cpu_seconds_total": ("counter", set()),
    "process_open_fds": ("gauge", set()),
    "process_max_fds": ("gauge", set()),
    "process_virtual_memory_bytes": ("gauge", set()),
    "process_virtual_memory_max_bytes": ("gauge", set()),
    "process_resident_memory_bytes": ("gauge", set()),
    "process_start_time_seconds": ("gauge", set()),
    "process_threads": ("gauge", set()),
}
TARGET_LABELS = {"job", "instance"}

# The series names a scrape holds, each with the labels it may carry.
SERIES, SERIES_OF = {}, {}
for _name, (_kind, _labels) in CONTRACT.items():
    if _kind == "histogram":
        SERIES[_name + "_bucket"] = _labels | {"le"}
        SERIES[_name + "_sum"] = set(_labels)
        SERIES[_name + "_count"] = set(_labels)
        for _suffix in ("_bucket", "_sum", "_count"):
            SERIES_OF[_name + _suffix] = _name
    else:
        SERIES[_name] = set(_labels)
        SERIES_OF[_name] = _name

FUNCTIONS = {
    # aggregation operators
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
    "topk", "quantile", "limitk", "limit_ratio",
    # functions
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
    "day_of_month", "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp",
    "floor", "histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile",
    "histogram_stddev", "histogram_stdvar", "histogram_sum", "holt_winters", "hour", "idelta",
    "increase", "irate", "label_join", "label_replace", "ln", "log2", "log10", "minute", "month",
    "predict_linear", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sqrt",
    "time", "timestamp", "vector", "year", "avg_over_time", "min_over_time", "max_over_time",
    "sum_over_time", "count_over_time", "quantile_over_time", "stddev_over_time",
    "stdvar_over_time", "last_over_time", "present_over_time",
}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "inf", "nan"}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}

IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")

errors = []


def fail(message):
    errors.append(message)


def check_expr(where, expr, legend=None):
    """Metric and label names of one PromQL expression against the contract."""
    if not expr or not expr.strip():
        fail(f"{where}: empty expr")
        return
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries: [5m], [$__rate_interval]
    metrics, labels_used = [], set()
    i, last_metric = 0, None
    while i < len(text):
        ch = text[i]
        if ch == "{":
            end = text.index("}", i)
            block = text[i + 1:end]
            names = set(MATCHER_LABEL.findall(block))
            labels_used |= names
            if last_metric is not None:
                unknown = names - SERIES.get(last_metric, set()) - TARGET_LABELS - {"__name__"}
                if unknown:
                    fail(f"{where}: {last_metric} has no label(s) {sorted(unknown)}")
            i, last_metric = end + 1, None
            continue
        match = IDENT.match(text, i) if (ch.isalpha() or ch in "_:") else None
        if match is None:
            if not ch.isspace():
                last_metric = None
            # numbers like 0.99 or 1e3: skip the whole literal
            number = re.match(r"\d+(?:\.\d*)?(?:[eE][+-]?\d+)?", text[i:]) if ch.isdigit() else None
            i += len(number.group(0)) if number else 1
            continue
        word = match.group(0)
        i = match.end()
        rest = text[i:].lstrip()
        if word in GROUPING:
            if rest.startswith("("):
                end = text.index(")", text.index("(", i))
                labels_used |= set(IDENT.findall(text[text.index("(", i) + 1:end]))
                i = end + 1
            last_metric = None
        elif word in KEYWORDS:
            last_metric = None
        elif word in FUNCTIONS and (rest.startswith("(") or re.match(r"(?:by|without)\b", rest)):
            last_metric = None  # sum(...), or an aggregation with its grouping first: sum by (x) (...)
        elif rest.startswith("("):
            fail(f"{where}: unknown function {word}")
        else:
            metrics.append(word)
            last_metric = word
    if not metrics:
        fail(f"{where}: names no metric: {expr}")
    for metric in metrics:
        if metric not in SERIES:
            fail(f"{where}: {metric} is not a metric of the contract")
    known = set(TARGET_LABELS)
    for metric in metrics:
        known |= SERIES.get(metric, set())
    unknown = labels_used - known - {"__name__"}
    if unknown:
        fail(f"{where}: label(s) {sorted(unknown)} carried by none of {sorted(set(metrics))}")
    if legend:
        unknown = set(re.findall(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", legend)) - known
        if unknown:
            fail(f"{where}: legend names label(s) {sorted(unknown)} that the series do not carry")
    return metrics


def check_dashboard(path):
    try:
        with open(path, encoding="utf-8") as f:
            dash = json.load(f)
    except (OSError, ValueError) as err:
        fail(f"{path}: {err}")
        return 0, 0, set()
    for key, kind in (("title", str), ("uid", str), ("schemaVersion", int), ("panels", list)):
        if not isinstance(dash.get(key), kind):
            fail(f"{path}: `{key}` missing or not a {kind.__name__}")
    if isinstance(dash.get("uid"), str) and not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dash["uid"]):
        fail(f"{path}: uid {dash['uid']!r} is not 1-40 of [A-Za-z0-9_-]")
    variables = dash.get("templating", {}).get("list", [])
    if not any(v.get("name") == "DS_PROMETHEUS" and v.get("type") == "datasource"
               and v.get("query") == "prometheus" for v in variables):
        fail(f"{path}: no datasource variable DS_PROMETHEUS (type datasource, query prometheus)")
    for var in variables:
        if var.get("type") == "query":
            query = var.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            inner = re.fullmatch(r"\s*(?:label_values|query_result)\((.*)\)\s*", query or "")
            check_expr(f"{path}: variable {var.get('name')}", inner.group(1) if inner else query)
    allowed_ds = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    ids, boxes, queries, used = set(), [], 0, set()
    for panel in dash.get("panels", []):
        title = panel.get("title")
        where = f"{path}: panel {title!r}"
        if not isinstance(panel.get("id"), int) or panel["id"] in ids:
            fail(f"{where}: id missing or not unique")
        ids.add(panel.get("id"))
        if not panel.get("type") or not isinstance(title, str):
            fail(f"{where}: type or title missing")
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in ("h", "w", "x", "y")):
            fail(f"{where}: gridPos needs integer h, w, x, y")
            continue
        if grid["x"] < 0 or grid["w"] < 1 or grid["x"] + grid["w"] > 24 or grid["h"] < 1:
            fail(f"{where}: gridPos {grid} outside the 24-column grid")
        for other_title, other in boxes:
            if (grid["x"] < other["x"] + other["w"] and other["x"] < grid["x"] + grid["w"]
                    and grid["y"] < other["y"] + other["h"] and other["y"] < grid["y"] + grid["h"]):
                fail(f"{where}: overlaps panel {other_title!r}")
        boxes.append((title, grid))
        if panel.get("type") == "row":
            if panel.get("panels"):
                fail(f"{where}: collapsed rows hide their panels from this check; keep rows open")
            continue
        if panel.get("datasource") != allowed_ds:
            fail(f"{where}: datasource must be {allowed_ds}")
        targets = panel.get("targets") or []
        if not targets:
            fail(f"{where}: no targets")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or not all(refs):
            fail(f"{where}: refIds missing or repeated")
        for target in targets:
            if target.get("datasource", allowed_ds) != allowed_ds:
                fail(f"{where} {target.get('refId')}: datasource must be {allowed_ds}")
            names = check_expr(f"{where} {target.get('refId')}", target.get("expr"),
                               target.get("legendFormat"))
            used |= {SERIES_OF[n] for n in names or [] if n in SERIES_OF}
            queries += 1
    return len(dash.get("panels", [])), queries, used


def check_docs(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    # A metric counts as documented when a table row of the docs names it in backticks.
    rows = "\n".join(line for line in text.splitlines() if line.startswith("|"))
    for name in CONTRACT:
        if f"`{name}`" not in rows:
            fail(f"{path}: the metrics table does not list `{name}`")


def image_tag(image):
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def expand(value, env):
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def check_overlay(path):
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    config_maps = by_kind.get("ConfigMap", {})
    common = next((cm.get("data", {}) for name, cm in config_maps.items()
                   if name.startswith("learnhub-common")), None)
    if common is None:
        fail(f"{path}: no learnhub-common ConfigMap")
        return
    version = common.get("APP_VERSION")
    endpoint = common.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    sampler = common.get("OTEL_TRACES_SAMPLER")
    otlp = urlparse(endpoint)
    if otlp.scheme not in ("http", "https") or not otlp.hostname or not otlp.port:
        fail(f"{path}: OTEL_EXPORTER_OTLP_ENDPOINT {endpoint!r} is not scheme://host:port")
    if not sampler:
        fail(f"{path}: OTEL_TRACES_SAMPLER not set")
    elif sampler.endswith("traceidratio"):
        try:
            ratio = float(common.get("OTEL_TRACES_SAMPLER_ARG", ""))
            if not 0 <= ratio <= 1:
                raise ValueError
        except ValueError:
            fail(f"{path}: {sampler} needs OTEL_TRACES_SAMPLER_ARG in [0, 1]")

    workloads = [d for kind in ("Deployment", "Job") for d in by_kind.get(kind, {}).values()
                 if d["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "learnhub"]
    if len(workloads) < 4:
        fail(f"{path}: expected the learnhub Deployments and Jobs, found {len(workloads)}")
    scrape_ports = {}
    for workload in workloads:
        name = workload["metadata"]["name"]
        pod = workload["spec"]["template"]
        for container in pod["spec"]["containers"]:
            where = f"{path}: {workload['kind']} {name}/{container['name']}"
            env_from = {}
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef", {}).get("name")
                env_from.update(config_maps.get(ref, {}).get("data", {}))
            if env_from.get("APP_VERSION") != version:
                fail(f"{where}: does not read APP_VERSION from learnhub-common")
            env, defined = dict(env_from), []
            for var in container.get("env", []):
                defined.append(var["name"])
                if "value" in var:
                    env[var["name"]] = expand(var["value"], env)
                elif "fieldRef" in var.get("valueFrom", {}):
                    env[var["name"]] = "<" + var["valueFrom"]["fieldRef"]["fieldPath"] + ">"
                else:
                    env[var["name"]] = "<secret>"
            attributes = dict(pair.split("=", 1) for pair in
                              env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(",") if "=" in pair)
            expected = {
                "service.version": image_tag(container["image"]),
                "k8s.pod.name": "<metadata.name>",
                "k8s.namespace.name": "<metadata.namespace>",
            }
            for key, value in expected.items():
                if attributes.get(key) != value:
                    fail(f"{where}: OTEL_RESOURCE_ATTRIBUTES {key}={attributes.get(key)!r}, "
                         f"expected {value!r} (image {container['image']}, APP_VERSION {version!r})")
            if "$(" in env.get("OTEL_RESOURCE_ATTRIBUTES", ""):
                fail(f"{where}: OTEL_RESOURCE_ATTRIBUTES refers to a variable not defined before it: "
                     f"{env['OTEL_RESOURCE_ATTRIBUTES']}")
            if "OTEL_SERVICE_NAME" not in defined:
                fail(f"{where}: OTEL_SERVICE_NAME not set")
            if workload["kind"] != "Deployment":
                continue
            annotations = pod["metadata"].get("annotations", {})
            ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            if annotations.get("prometheus.io/scrape") != "true" or \
                    annotations.get("prometheus.io/path") != "/metrics":
                fail(f"{where}: needs prometheus.io/scrape \"true\" and prometheus.io/path /metrics")
            port = annotations.get("prometheus.io/port", "")
            if not port.isdigit() or int(port) not in ports.values():
                fail(f"{where}: prometheus.io/port {port!r} is none of its ports {ports}")
                continue
            port = int(port)
            scrape_ports[name] = port
            if "metrics" in ports:
                if ports["metrics"] != port:
                    fail(f"{where}: the metrics port {ports['metrics']} is not the annotated {port}")
                addr = env.get("METRICS_ADDR", "")
                if not addr.endswith(f":{port}"):
                    fail(f"{where}: METRICS_ADDR {addr!r} does not listen on the metrics port {port}")
            elif port != ports.get("http"):
                fail(f"{where}: scraped on {port}, which is neither its metrics nor its http port")

    # NetworkPolicies: spans may leave for the OTLP port; scrapes may reach the metrics port.
    policies = by_kind.get("NetworkPolicy", {})
    for name in ("gateway", "catalog-svc", "enrollment-svc", "cache-svc", "learnhub-migrate"):
        policy = policies.get(name)
        if policy is None:
            fail(f"{path}: no NetworkPolicy {name}")
            continue
        egress_ports = {p.get("port") for rule in policy["spec"].get("egress", [])
                        for p in rule.get("ports", [])}
        if otlp.port and otlp.port not in egress_ports:
            fail(f"{path}: NetworkPolicy {name} lets nothing out to the OTLP port {otlp.port}")
        if name in scrape_ports:
            ingress_ports = {p.get("port") for rule in policy["spec"].get("ingress", [])
                             for p in rule.get("ports", [])}
            if not ingress_ports & {"metrics", scrape_ports[name]}:
                fail(f"{path}: NetworkPolicy {name} admits no scrape of port {scrape_ports[name]}")

    # A Prometheus shipped in the overlay must scrape every service on its port, through a
    # headless Service that selects that service's pods.
    services = by_kind.get("Service", {})
    for cm_name, cm in config_maps.items():
        if "prometheus.yml" not in cm.get("data", {}):
            continue
        config = yaml.safe_load(cm["data"]["prometheus.yml"])
        found = {}
        for job in config.get("scrape_configs", []):
            for sd in job.get("dns_sd_configs", []):
                for dns_name in sd.get("names", []):
                    found[job["job_name"]] = (dns_name.split(".")[0], sd.get("port"),
                                              job.get("metrics_path", "/metrics"))
            for static in job.get("static_configs", []):
                for target in static.get("targets", []):
                    found.setdefault(job["job_name"], (target.rsplit(":", 1)[0].split(".")[0],
                                                       int(target.rsplit(":", 1)[1]),
                                                       job.get("metrics_path", "/metrics")))
        for workload, port in scrape_ports.items():
            if workload not in found:
                fail(f"{path}: {cm_name} has no scrape job {workload}")
                continue
            host, job_port, metrics_path = found[workload]
            if job_port != port or metrics_path != "/metrics":
                fail(f"{path}: {cm_name} job {workload} scrapes :{job_port}{metrics_path}, "
                     f"the pods serve :{port}/metrics")
            service = services.get(host)
            if service is None or service["spec"].get("clusterIP") != "None" or \
                    service["spec"].get("selector", {}).get("app.kubernetes.io/name") != workload:
                fail(f"{path}: {cm_name} job {workload} resolves {host!r}, which is not a headless "
                     f"Service of {workload}'s pods")
    sampling = sampler + (f" {common['OTEL_TRACES_SAMPLER_ARG']}" if "OTEL_TRACES_SAMPLER_ARG" in common else "")
    print(f"  {path.rsplit('/', 1)[-1]}: {len(workloads)} workloads, service.version {version}, "
          f"OTLP {endpoint}, sampler {sampling}, scraped {dict(sorted(scrape_ports.items()))}")


def main(argv):
    if len(argv) < 3:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    dashboard, docs, rendered = argv[0], argv[1], argv[2:]
    panels, queries, used = check_dashboard(dashboard)
    print(f"  {dashboard}: {panels} panels, {queries} queries, {len(used)} of {len(CONTRACT)} "
          f"contract metrics shown")
    check_docs(docs)
    for path in rendered:
        check_overlay(path)
    for message in errors:
        print(f"ERROR {message}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
