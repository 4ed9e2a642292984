"""deploy/: compose, Dockerfile, RabbitMQ settings, Prometheus config and alerts, dashboard.

Static checks run everywhere; promtool and Prometheus come from Debian's `prometheus`
package (scripts/install_prometheus.sh, run here when they are missing; the tests that
need them skip if it cannot install them); the RabbitMQ settings are applied to a
throwaway RabbitMQ node of their own when rabbitmq-server is installed. The tests marked
`models` run the real services on loopback, push two jobs through them, and check that
every metric named by a PromQL expression in deploy/ is one the services export, and that
a real Prometheus with deploy/'s config (targets rewritten to loopback) sees every target
up and evaluates every rule and dashboard query.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import pika
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from contracts import Stage
from contracts.routing import EVENTS_EXCHANGE, STAGE_QUEUES, dead_letter_queue
from processing_service.runtime.config import MAX_HELD_MS
from tests.support.servers import REPO_ROOT, IngestServer, Worker, free_port

yaml = pytest.importorskip("yaml")

DEPLOY = REPO_ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS_YML = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST_YML = DEPLOY / "prometheus" / "alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "audio-pipeline.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "audio-pipeline.yml"
RABBITMQ_CONF = DEPLOY / "rabbitmq" / "rabbitmq.conf"
RABBITMQ_DEFINITIONS = DEPLOY / "rabbitmq" / "definitions.json"

SERVICES = {
    "rabbitmq",
    "postgres",
    "ingest",
    "worker-light",
    "worker-heavy",
    "prometheus",
    "grafana",
    "models",
}
REQUIRED_ALERTS = {
    "DeadLettersPresent",
    "JobFailureRatioHigh",
    "StageLatencyP95High",
    "OutboxBacklogGrowing",
    "IngestDown",
    "WorkerPoolDown",
}
#: Series that Prometheus makes itself for every target, not exported by the services.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
#: Labels that Prometheus attaches to every scraped series (the `pool` label comes from
#: prometheus.yml's static_configs).
TARGET_LABELS = {"job", "instance", "pool"}
#: Grafana's range variables, given a plain duration where PromQL is checked.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


# --- PromQL ----------------------------------------------------------------------------

PROMQL_FUNCTIONS = {
    # aggregations
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
    # functions
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
    "count_over_time", "days_in_month", "day_of_month", "day_of_week", "day_of_year", "deg",
    "delta", "deriv", "exp", "floor", "histogram_avg", "histogram_count", "histogram_fraction",
    "histogram_quantile", "histogram_stddev", "histogram_stdvar", "histogram_sum",
    "holt_winters", "double_exponential_smoothing", "hour", "idelta", "increase", "irate",
    "label_join", "label_replace", "last_over_time", "ln", "log10", "log2",
    "mad_over_time", "max_over_time", "min_over_time", "minute", "month", "pi",
    "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets",
    "round", "scalar", "sgn", "sin", "sinh", "sort", "sort_desc", "sort_by_label",
    "sort_by_label_desc", "sqrt", "stddev_over_time", "stdvar_over_time", "sum_over_time",
    "tan", "tanh", "time", "timestamp", "vector", "year",
}  # fmt: skip
PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan", "atan2", "start", "end",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
_IDENTIFIER = re.compile(r"(?<![\w.$:])([a-zA-Z_:][\w:]*)")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels removed)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = _GROUPING.sub(" ", text)  # by (...), on (...), group_left (...)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group(1)
        if name.lower() in PROMQL_KEYWORDS:
            continue
        if text[match.end() :].lstrip().startswith("(") or name in PROMQL_FUNCTIONS:
            continue  # a function call or an aggregation
        names.add(name)
    return names


def label_names(expr: str) -> set[str]:
    """The label names an expression matches on or groups by."""
    text = _STRING.sub('""', expr)
    labels = set()
    for _metric, matchers in _SELECTOR.findall(text):
        labels.update(_MATCHER_LABEL.findall(matchers))
    for bare in re.findall(r"(?<![\w:])\{([^}]*)\}", text):  # {__name__=...} selectors
        labels.update(_MATCHER_LABEL.findall(bare))
    for _keyword, grouping in _GROUPING.findall(text):
        labels.update(label.strip() for label in grouping.split(",") if label.strip())
    labels.discard("__name__")
    return labels


def with_plain_durations(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def test_metric_names_are_extracted_from_promql() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (stage, le) (rate(pipeline_stage_duration_seconds_bucket"
        '{stage=~"transcribe|diarize"}[$__rate_interval]))) > 1e3 '
        "and on() sum without (instance) (increase(ingest_uploads_total[1h] offset 5m)) "
        '/ ignoring(outcome) group_left max(up{job="worker"}) or vector(0) '
        '+ count_over_time(foo:bar_total [5m:30s]) - label_replace(x_y, "a", "$1", "b", "(.*)")'
    )
    assert metric_names(expr) == {
        "pipeline_stage_duration_seconds_bucket",
        "ingest_uploads_total",
        "up",
        "foo:bar_total",
        "x_y",
    }
    assert label_names(expr) == {"stage", "le", "instance", "outcome", "job"}
    assert metric_names("sum(rate(a_total[5m])) by (queue_name)") == {"a_total"}
    assert label_names("sum(rate(a_total[5m])) by (queue_name)") == {"queue_name"}


def alert_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for group in yaml.safe_load(ALERTS_YML.read_text())["groups"]:
        rules.extend(group["rules"])
    return rules


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_panels() -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # collapsed rows
    return [p for p in panels if p.get("type") != "row"]


def all_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) for every alert rule and every dashboard query."""
    found = [(f"alert {rule['alert']}", str(rule["expr"])) for rule in alert_rules()]
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    return found


# --- compose and Dockerfile ----------------------------------------------------------


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_compose_is_yaml_that_names_every_service() -> None:
    spec = compose()
    assert set(spec["services"]) >= SERVICES, SERVICES - set(spec["services"])
    services = spec["services"]
    assert "management" in services["rabbitmq"]["image"]
    volumes = set(spec["volumes"])
    assert {"storage", "models"} <= volumes
    for name in ("ingest", "worker-light", "worker-heavy"):
        assert "storage:/data/storage" in services[name]["volumes"], name
    for name in ("models", "worker-light", "worker-heavy"):
        assert "models:/models" in services[name]["volumes"], name
    assert services["worker-light"]["command"][-2:] == ["--pool", "light"]
    assert services["worker-heavy"]["command"][-2:] == ["--pool", "heavy"]
    assert services["ingest"]["command"] == ["python", "-m", "ingest_service", "serve"]
    for name in ("worker-light", "worker-heavy"):
        condition = services[name]["depends_on"]["models"]["condition"]
        assert condition == "service_completed_successfully"
    rabbit_mounts = " ".join(services["rabbitmq"]["volumes"])
    assert "rabbitmq.conf:/etc/rabbitmq/conf.d/" in rabbit_mounts
    assert "definitions.json:/etc/rabbitmq/definitions.json" in rabbit_mounts
    # Every bind mount names a file or directory that exists in deploy/.
    for name, service in services.items():
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
    # Every published port binds loopback only.
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_compose_sets_only_variables_the_services_read() -> None:
    sources = "\n".join(
        path.read_text()
        for package in ("ingest_service", "processing_service", "infra")
        for path in (REPO_ROOT / package).rglob("*.py")
    )
    read_elsewhere = {"PYANNOTE_METRICS_ENABLED"}  # pyannote.audio's own switch
    for name in ("ingest", "worker-light", "worker-heavy", "models"):
        for variable in compose()["services"][name].get("environment", {}):
            assert f'"{variable}"' in sources or variable in read_elsewhere, (
                f"{name} sets {variable}, which no service reads"
            )


def test_dockerfile_targets_and_copied_paths_exist() -> None:
    text = DOCKERFILE.read_text()
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, flags=re.MULTILINE | re.I))
    for name, service in compose()["services"].items():
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
            assert build["target"] in stages, f"{name}: no stage {build['target']}"
    first_from = next(line for line in text.splitlines() if line.startswith("FROM"))
    assert first_from.startswith("FROM python:3.11-slim"), first_from
    # The build context (Dockerfile.dockerignore: exclude all, then allow) holds every
    # path that a COPY names, and the repository has it.
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].strip().rstrip("/") for line in ignore if line.startswith("!")}
    for sources in re.findall(r"^COPY\s+(?!--from)(.+)\s+\S+$", text, flags=re.MULTILINE):
        for source in sources.split():
            assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert source.rstrip("/") in allowed, f"COPY {source}: not in the build context"
    assert "scripts/install_speech_stack.sh" in text
    assert "ffmpeg" in text


def test_prometheus_targets_are_the_compose_services_and_ports() -> None:
    services = compose()["services"]
    ports = {
        "ingest": services["ingest"]["environment"]["INGEST_PORT"],
        "worker-light": services["worker-light"]["environment"]["LIGHT_METRICS_PORT"],
        "worker-heavy": services["worker-heavy"]["environment"]["HEAVY_METRICS_PORT"],
    }
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert targets == {f"{host}:{port}" for host, port in ports.items()}
    assert {job["job_name"] for job in config["scrape_configs"]} == {"ingest", "worker"}
    assert config["rule_files"] == ["alerts.yml"]


# --- alerts and dashboard ----------------------------------------------------------------


def test_alert_rules_cover_the_issue() -> None:
    rules = alert_rules()
    names = {rule["alert"] for rule in rules}
    assert names >= REQUIRED_ALERTS, REQUIRED_ALERTS - names
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        readme = (DEPLOY / "README.md").read_text()
        assert f"### {rule['alert']}" in readme, f"deploy/README.md says nothing on {anchor}"


def test_dashboard_is_focused_and_uses_the_provisioned_datasource() -> None:
    board = dashboard()
    panels = dashboard_panels()
    assert 10 <= len(panels) <= 14, len(panels)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    datasource_uid = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]["uid"]
    for panel in panels:
        assert panel["datasource"]["uid"] == datasource_uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource_uid, panel["title"]
    titles = " ".join(panel["title"].lower() for panel in panels)
    for topic in ("throughput", "latency", "queue depth", "dead-letter", "failure",
                  "real-time factor", "webhook"):  # fmt: skip
        assert topic in titles, topic
    assert board["uid"] == "audio-pipeline"
    # The provider reads the directory that compose mounts the dashboards into.
    provider = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"][0]
    mounts = compose()["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts


# --- promtool ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrometheusTools:
    promtool: str
    prometheus: str


@pytest.fixture(scope="session")
def prometheus_tools() -> PrometheusTools:
    """promtool and prometheus from Debian's package, installed if missing (or skip)."""
    detail = ""
    if not (shutil.which("promtool") and shutil.which("prometheus")):
        result = subprocess.run(
            ["bash", str(REPO_ROOT / "scripts" / "install_prometheus.sh")],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        detail = (result.stdout + result.stderr).strip()[-600:]
    promtool, prometheus = shutil.which("promtool"), shutil.which("prometheus")
    if not (promtool and prometheus):
        pytest.skip(
            "promtool/prometheus are not installed and scripts/install_prometheus.sh "
            f"could not install them (needs root on Debian): {detail}"
        )
    return PrometheusTools(promtool, prometheus)


def promtool(tools: PrometheusTools, *args: str) -> str:
    result = subprocess.run(
        [tools.promtool, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=DEPLOY / "prometheus",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def test_promtool_check_config(prometheus_tools: PrometheusTools) -> None:
    output = promtool(prometheus_tools, "check", "config", str(PROMETHEUS_YML))
    assert "SUCCESS" in output


def test_promtool_check_and_test_rules(prometheus_tools: PrometheusTools) -> None:
    assert "SUCCESS" in promtool(prometheus_tools, "check", "rules", str(ALERTS_YML))
    assert "SUCCESS" in promtool(prometheus_tools, "test", "rules", str(ALERTS_TEST_YML))


def test_every_dashboard_query_is_valid_promql(
    prometheus_tools: PrometheusTools, tmp_path: Path
) -> None:
    # promtool parses recording rules offline: one per dashboard query.
    rules = [
        {"record": f"dashboard:panel_{i}", "expr": with_plain_durations(expr)}
        for i, (_where, expr) in enumerate(all_expressions())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert "SUCCESS" in promtool(prometheus_tools, "check", "rules", str(path))


# --- RabbitMQ settings ------------------------------------------------------------------------

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")


def test_consumer_timeout_covers_the_longest_held_message() -> None:
    settings = {}
    for line in RABBITMQ_CONF.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            settings[key.strip()] = value.strip()
    timeout_ms = int(settings["consumer_timeout"])
    assert timeout_ms == 1_800_000  # explicit, though it is RabbitMQ's default
    assert timeout_ms > MAX_HELD_MS  # actors' time limits and backoffs stay under it
    assert settings["load_definitions"] == "/etc/rabbitmq/definitions.json"


@dataclass(frozen=True)
class RabbitNode:
    name: str
    amqp_port: int
    env: dict[str, str]

    def ctl(self, *args: str) -> str:
        result = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-q", "-n", self.name, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def url(self, user: str, password: str, vhost: str) -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{self.amqp_port}/{vhost}"


@pytest.fixture(scope="module")
def rabbit_node() -> Iterator[RabbitNode]:
    """A throwaway RabbitMQ node configured like compose's (conf.d file + definitions)."""
    if not (RABBITMQ_BIN / "rabbitmq-server").exists():
        pytest.skip("rabbitmq-server is not installed here")
    with tempfile.TemporaryDirectory(prefix="deploy-rabbit-") as tmp:
        root = Path(tmp)
        conf_d = root / "conf.d"
        conf_d.mkdir()
        amqp_port, dist_port = free_port(), free_port()
        (root / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{amqp_port}\n")
        (conf_d / "20-audio-pipeline.conf").write_text(
            RABBITMQ_CONF.read_text().replace(
                "/etc/rabbitmq/definitions.json", str(RABBITMQ_DEFINITIONS)
            )
        )
        (root / "enabled_plugins").write_text("[].\n")
        name = f"deploy-check-{uuid.uuid4().hex[:8]}@localhost"
        env = {
            **os.environ,
            "HOME": str(root),  # its own Erlang cookie
            "RABBITMQ_NODENAME": name,
            "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq.conf"),
            "RABBITMQ_CONFIG_FILES": str(conf_d),
            "RABBITMQ_CONF_ENV_FILE": str(root / "none"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(root / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(root / "log"),
            "RABBITMQ_PID_FILE": str(root / "pid"),
            "RABBITMQ_DIST_PORT": str(dist_port),
        }
        node = RabbitNode(name, amqp_port, env)
        subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmq-server"), "-detached"],
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        try:
            node.ctl("wait", "--timeout", "120", str(root / "pid"))
            yield node
        finally:
            stopped = subprocess.run(
                [str(RABBITMQ_BIN / "rabbitmqctl"), "-q", "-n", name, "stop"],
                env=env,
                capture_output=True,
                timeout=90,
                check=False,
            )
            pid_file = root / "pid"
            if stopped.returncode != 0 and pid_file.exists():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)


def test_rabbitmq_settings_are_applied_by_a_real_node(rabbit_node: RabbitNode) -> None:
    definitions = json.loads(RABBITMQ_DEFINITIONS.read_text())
    vhost = definitions["vhosts"][0]["name"]
    assert rabbit_node.ctl("eval", "application:get_env(rabbit, consumer_timeout).").strip() == (
        "{ok,1800000}"
    )
    assert vhost in rabbit_node.ctl("list_vhosts").split()
    policies = rabbit_node.ctl("list_policies", "-p", vhost)
    assert "dead-letter-queues" in policies
    # The app user of compose's AMQP_URL gets in; the default guest user does not exist.
    app_url = compose()["x-app-env"]["AMQP_URL"].replace("${RABBITMQ_PASSWORD:-audio}", "audio")
    user_password, _, rest = app_url.removeprefix("amqp://").partition("@")
    user, password = user_password.split(":")
    assert rest.endswith(f"/{vhost}")
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(pika.URLParameters(rabbit_node.url("guest", "guest", "%2F")))
    # Dramatiq declares its queues (dead-letter arguments, a TTL on the dead-letter queue)
    # beside the policy without conflict.
    queue = STAGE_QUEUES[Stage.SPLIT]
    broker = RabbitmqBroker(url=rabbit_node.url(user, password, vhost), confirm_delivery=True)
    try:
        broker.declare_queue(queue)
        broker.enqueue(
            dramatiq.Message(queue_name=queue, actor_name=queue, args=({},), kwargs={}, options={})
        )
    finally:
        broker.close()
    # The events exchange exists before any worker declares it.
    connection = pika.BlockingConnection(pika.URLParameters(rabbit_node.url(user, password, vhost)))
    try:
        channel = connection.channel()
        channel.exchange_declare(EVENTS_EXCHANGE, exchange_type="topic", passive=True)
        assert channel.queue_declare(queue, passive=True).method.message_count == 1
    finally:
        connection.close()
    queues = rabbit_node.ctl("list_queues", "-p", vhost, "name", "policy")
    assert re.search(rf"^{re.escape(dead_letter_queue(queue))}\s+dead-letter-queues$", queues, re.M)


# --- the running services ---------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    ingest: IngestServer
    worker: Worker
    light_port: int
    heavy_port: int

    def metrics_urls(self) -> dict[str, str]:
        return {
            "ingest": f"{self.ingest.url}/metrics",
            "worker-light": f"http://127.0.0.1:{self.light_port}/metrics",
            "worker-heavy": f"http://127.0.0.1:{self.heavy_port}/metrics",
        }


@dataclass(frozen=True)
class Scraped:
    """Sample names exported by the services, and the label names seen on each."""

    labels: dict[str, set[str]]


def scrape(stack: Stack) -> Scraped:
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    labels: dict[str, set[str]] = {}
    for url in stack.metrics_urls().values():
        response = httpx.get(url, timeout=10)
        response.raise_for_status()
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                labels.setdefault(sample.name, set()).update(sample.labels)
    return Scraped(labels)


def wait_until_serving(urls: dict[str, str], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    waiting = dict(urls)
    while waiting and time.monotonic() < deadline:
        for name, url in list(waiting.items()):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    del waiting[name]
        time.sleep(0.5)
    assert not waiting, f"metrics not served by {sorted(waiting)}"


@pytest.fixture(scope="module")
def exercised_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Ingest and both worker pools on loopback, after one job whose webhook dies and one
    undecodable upload: every labelled series the dashboard and alerts use then exists."""
    from tests.e2e.conftest import SHORT_TEXT, worker_env  # noqa: PLC0415
    from tests.support.audio import undecodable_wav  # noqa: PLC0415
    from tests.support.isolation import isolated  # noqa: PLC0415
    from tests.support.jobs import stage, upload, wait_for_job  # noqa: PLC0415
    from tests.support.speech import speak  # noqa: PLC0415
    from tests.support.webhook_receiver import WebhookReceiver  # noqa: PLC0415

    loopback = "127.0.0.0/8,::1/128"
    logs = tmp_path_factory.mktemp("deploy-logs")
    with isolated(tmp_path_factory.mktemp("deploy-storage")) as env:
        receiver = WebhookReceiver({"/down": [500]})
        ingest = IngestServer(
            env.environ(OUTBOX_POLL_INTERVAL_S="0.2", WEBHOOK_ALLOWED_NETWORKS=loopback),
            logs / "ingest.log",
        )
        light_port, heavy_port = free_port(), free_port()
        worker = Worker(
            worker_env(
                env,
                WORKER_METRICS_HOST="127.0.0.1",
                LIGHT_METRICS_PORT=str(light_port),
                HEAVY_METRICS_PORT=str(heavy_port),
                WEBHOOK_ALLOWED_NETWORKS=loopback,
                NOTIFY_MAX_RETRIES="1",
                RETRY_MIN_BACKOFF_MS="200",
                RETRY_MAX_BACKOFF_MS="600",
            ),
            logs / "worker.log",
        )
        stack = Stack(ingest, worker, light_port, heavy_port)
        try:
            wait_until_serving(stack.metrics_urls())
            speech = speak(SHORT_TEXT, tmp_path_factory.mktemp("deploy-speech") / "short.wav")
            junk = undecodable_wav()
            with ingest.client() as client:
                good = upload(client, speech, webhook_url=receiver.url("/down"))
                response = client.post(
                    "/v1/jobs", files={"file": ("broken.wav", junk, "audio/wav")}
                )
                assert response.status_code == 202, response.text
                bad = response.json()["id"]
                # Its webhook answers 500 until the notify message is dead-lettered.
                wait_for_job(client, good, until=lambda j: stage(j, "notify")["state"] == "dead")
                assert wait_for_job(client, bad)["status"] == "failed"
                client.get("/v1/jobs/00000000-0000-0000-0000-000000000000")  # a 404
            time.sleep(1)
            yield stack
        finally:
            worker.stop()
            ingest.stop()
            receiver.close()


@pytest.mark.models
@pytest.mark.timeout(900)
def test_every_promql_metric_is_exported_by_the_services(exercised_stack: Stack) -> None:
    scraped = scrape(exercised_stack)
    problems = []
    for where, expr in all_expressions():
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        for name in sorted(names - PROMETHEUS_SERIES):
            if name not in scraped.labels:
                problems.append(f"{where}: {name} is not exported")
        available = TARGET_LABELS.union(*(scraped.labels.get(n, set()) for n in names))
        for label in sorted(label_names(expr) - available):
            problems.append(f"{where}: no metric of {sorted(names)} has the label {label!r}")
    assert not problems, "\n".join(problems)


def prometheus_config(stack: Stack, rules: Path) -> dict[str, Any]:
    """deploy/'s prometheus.yml with every target moved to the loopback test services."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_YML.read_text())
    loopback = {
        "ingest:8000": f"127.0.0.1:{stack.ingest.port}",
        "worker-light:9191": f"127.0.0.1:{stack.light_port}",
        "worker-heavy:9192": f"127.0.0.1:{stack.heavy_port}",
    }
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(rules)]
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            static["targets"] = [loopback[target] for target in static["targets"]]
    return config


@contextlib.contextmanager
def running_prometheus(binary: str, config: Path, data: Path) -> Iterator[str]:
    port = free_port()
    log = (data.parent / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def api(base: str, path: str, **params: str) -> Any:
    response = httpx.get(f"{base}/api/v1/{path}", params=params, timeout=10)
    # Prometheus answers 503 (not JSON) while it starts; `poll` retries HTTP errors.
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]


def poll(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            ok, last = check()
            if ok:
                return last
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout_s} s; last seen: {last}")


@pytest.mark.models
@pytest.mark.timeout(900)
def test_real_prometheus_scrapes_both_services_and_evaluates_everything(
    exercised_stack: Stack, prometheus_tools: PrometheusTools, tmp_path: Path
) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(exercised_stack, ALERTS_YML)))
    promtool(prometheus_tools, "check", "config", str(config))
    with running_prometheus(prometheus_tools.prometheus, config, tmp_path / "data") as base:

        def targets_up() -> tuple[bool, Any]:
            active = api(base, "targets", state="active")["activeTargets"]
            health = {(t["labels"]["job"], t["scrapeUrl"]): t["health"] for t in active}
            return len(active) == 3 and set(health.values()) == {"up"}, health

        health = poll(targets_up, 60, "every target up")
        assert {job for job, _url in health} == {"ingest", "worker"}
        # Nothing outside loopback is scraped.
        assert all(url.startswith("http://127.0.0.1:") for _job, url in health)

        def rules_evaluated() -> tuple[bool, Any]:
            rules = [r for g in api(base, "rules")["groups"] for r in g["rules"]]
            return bool(rules) and all(r["health"] != "unknown" for r in rules), rules

        rules = poll(rules_evaluated, 30, "every rule evaluated")
        assert {r["name"] for r in rules} >= REQUIRED_ALERTS
        assert [(r["name"], r["lastError"]) for r in rules if r["health"] != "ok"] == []

        up = api(base, "query", query='up{job=~"ingest|worker"}')["result"]
        assert sorted((s["metric"]["job"], s["metric"].get("pool"), s["value"][1]) for s in up) == [
            ("ingest", None, "1"),
            ("worker", "heavy", "1"),
            ("worker", "light", "1"),
        ]
        # Every dashboard query runs; those on series the job produced return data.
        for where, expr in all_expressions():
            assert api(base, "query", query=with_plain_durations(expr)) is not None, where
        for expr in (
            "max by (queue) (pipeline_dead_letter_messages)",
            'pipeline_jobs_total{outcome="failed"}',
            "dramatiq_messages_total",
            "ingest_http_requests_total",
        ):
            assert api(base, "query", query=expr)["result"], f"no data for {expr}"
