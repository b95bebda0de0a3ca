"""The deployment files are wired together: docker-compose.yml, nginx, Prometheus, Grafana, Kubernetes and
the Dockerfiles. Nothing is started (this machine has no container engine); the files are parsed and
cross-checked, and checked by the real tools where they are installed (nginx -t, promtool, kubectl
kustomize, docker compose config)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from zerosearch_simulator.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "zerosearch.json"
K8S = ROOT / "deploy" / "k8s"
REPLICAS_SH = ROOT / "scripts" / "replicas.sh"

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")
# Labels Prometheus adds to every series, and the bucket label of histograms.
_TARGET_LABELS = {"instance", "job", "replica", "le", "namespace", "pod"}


def interpolate(value: Any) -> Any:
    """Compose's `${VAR:-default}` with an empty environment: every variable takes its default."""
    if isinstance(value, str):
        return _VAR.sub(lambda m: m.group(2) or "", value).replace("$$", "$")
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return interpolate(yaml.safe_load(COMPOSE.read_text()))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def healthcheck_text(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def gpu_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    reservations = (((service.get("deploy") or {}).get("resources") or {}).get("reservations") or {})
    return [d for d in reservations.get("devices") or [] if "gpu" in d.get("capabilities", [])]


def active(services: dict[str, dict[str, Any]], profile: str) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if not s.get("profiles") or profile in s["profiles"]}


def bind_mounts(service: dict[str, Any]) -> Iterator[tuple[Path, str]]:
    for volume in service.get("volumes") or []:
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            yield (ROOT / source).resolve(), target


def metric_catalogue() -> dict[str, tuple[str, set[str]]]:
    """Every sample name the simulator exports -> (family, label names), from metrics.py itself."""
    metrics = Metrics()
    labels = {getattr(c, "_name", ""): set(getattr(c, "_labelnames", ())) for c in vars(metrics).values()}
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""],
                "summary": ["_sum", "_count", ""]}
    catalogue = {}
    for family in metrics.registry.collect():
        for suffix in suffixes[family.type]:
            catalogue[family.name + suffix] = (family.name, labels.get(family.name, set()))
    return catalogue


# ---- docker-compose.yml -----------------------------------------------------------------------------

def test_compose_has_the_stack(services: dict[str, dict[str, Any]]) -> None:
    assert {"redis", "simulator", "simulator-cpu", "lb", "prometheus", "grafana", "trainer",
            "trainer-cpu"} <= set(services)
    assert "redis-server" in " ".join(services["redis"]["command"])
    assert "redis-cli" in healthcheck_text(services["redis"])
    for name, service in services.items():
        image = service.get("image", "")
        assert image and ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag ({image!r})"


def test_compose_gpu_simulator(services: dict[str, dict[str, Any]]) -> None:
    sim = services["simulator"]
    assert sim["profiles"] == ["gpu"]
    assert int(sim["deploy"]["replicas"]) >= 1
    devices = gpu_devices(sim)
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    env = env_of(sim)
    assert env["ZS_BACKEND"] == "vllm"
    assert env["ZS_MODEL"].startswith("sunhaonlp/Simulation_LLM_google_")
    assert env["ZS_REDIS_URL"].startswith("redis://redis:")
    assert (ROOT / sim["build"]["context"] / sim["build"]["dockerfile"]).is_file()


def test_compose_cpu_profile_runs_without_gpu(services: dict[str, dict[str, Any]]) -> None:
    sim = services["simulator-cpu"]
    assert sim["profiles"] == ["cpu"]
    assert int(sim["deploy"]["replicas"]) >= 2  # failover works on a laptop too
    env = env_of(sim)
    assert env["ZS_BACKEND"] == "transformers"
    assert env["ZS_MODEL"] in ("", "bundled")
    assert env["ZS_REDIS_URL"].startswith("redis://redis:")
    # Same DNS name as the GPU service: nginx and Prometheus need no change between profiles.
    assert "simulator" in sim["networks"]["default"]["aliases"]
    cpu_stack = active(services, "cpu")
    assert {"redis", "simulator-cpu", "lb", "prometheus", "grafana", "trainer-cpu"} <= set(cpu_stack)
    assert "simulator" not in cpu_stack and "trainer" not in cpu_stack
    assert not any(gpu_devices(s) for s in cpu_stack.values()), "the cpu profile must not reserve a GPU"
    assert (ROOT / sim["build"]["context"] / sim["build"]["dockerfile"]).is_file()


@pytest.mark.parametrize("profile", ["gpu", "cpu"])
def test_compose_profile_dependencies_are_active(services: dict[str, dict[str, Any]], profile: str) -> None:
    stack = active(services, profile)
    for name, service in stack.items():
        depends = service.get("depends_on") or {}
        for dependency in depends:
            assert dependency in stack, f"{name} depends on {dependency}, which profile {profile} does not start"


@pytest.mark.parametrize("name", ["simulator", "simulator-cpu"])
def test_compose_simulator_health_and_wiring(services: dict[str, dict[str, Any]], name: str) -> None:
    sim = services[name]
    check = healthcheck_text(sim)
    assert "/readyz" in check and ":8000" in check
    assert env_of(sim)["ZS_PORT"] == "8000" and env_of(sim)["ZS_HOST"] == "0.0.0.0"
    assert sim["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "ports" not in sim, "replicas must not publish host ports (they would clash); the lb does"
    assert "start_period" in sim["healthcheck"]


def test_compose_load_balancer(services: dict[str, dict[str, Any]]) -> None:
    lb = services["lb"]
    assert lb["image"].startswith("nginx:")
    mounts = dict((target, source) for source, target in bind_mounts(lb))
    assert mounts["/etc/nginx/nginx.conf"] == NGINX_CONF
    published = lb["ports"][0].rsplit(":", 1)[-1]
    conf = NGINX_CONF.read_text()
    assert re.search(rf"listen\s+{published};", conf), "the lb's container port is the one nginx listens on"
    upstream = re.search(r"upstream\s+(\w+)\s*\{(.*?)\}", conf, re.S)
    assert upstream, "nginx.conf has no upstream block"
    assert re.search(r"server\s+simulator:8000\b", upstream.group(2))
    assert re.search(rf"proxy_pass\s+http://{upstream.group(1)};", conf)
    next_upstream = re.search(r"proxy_next_upstream\s+([^;]+);", conf)
    assert next_upstream, "nginx.conf does not retry on the next replica"
    conditions = set(next_upstream.group(1).split())
    assert {"error", "timeout", "http_502", "http_503", "http_504", "non_idempotent"} <= conditions
    read_timeout = re.search(r"proxy_read_timeout\s+(\d+)s;", conf)
    assert read_timeout and int(read_timeout.group(1)) > 120, "proxy_read_timeout must exceed ZS_TIMEOUT_S"


@pytest.mark.parametrize(("name", "simulator"), [("trainer", "simulator"), ("trainer-cpu", "simulator-cpu")])
def test_compose_trainer_goes_through_the_load_balancer(services: dict[str, dict[str, Any]], name: str,
                                                        simulator: str) -> None:
    trainer = services[name]
    container_port = services["lb"]["ports"][0].rsplit(":", 1)[-1]
    assert env_of(trainer)["ZS_SEARCH_URL"] == f"http://lb:{container_port}"
    assert "zerosearch train --config" in " ".join(trainer["command"])
    assert (ROOT / env_of(trainer)["ZS_TRAIN_CONFIG"]).is_file(), "the default training recipe is missing"
    assert trainer["depends_on"]["lb"]["condition"] == "service_healthy"
    assert trainer["depends_on"][simulator]["condition"] == "service_healthy"
    assert (ROOT / trainer["build"]["context"] / trainer["build"]["dockerfile"]).is_file()


def test_compose_bind_mounts_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for source, _ in bind_mounts(service):
            if source.name in ("outputs", "configs"):  # created by the run / filled by the recipes
                continue
            assert source.exists(), f"{name} mounts {source}, which is not in the repository"


def test_docker_compose_config_validates() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker client here has no compose plugin (`docker compose`); the file is checked by "
                    "the structural tests above")
    for profile in ("gpu", "cpu"):
        result = subprocess.run([docker, "compose", "-f", str(COMPOSE), "--profile", profile, "config", "-q"],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"docker compose config ({profile}): {result.stderr}"


# ---- nginx ------------------------------------------------------------------------------------------

def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if found is None:
        if shutil.which("apt-get") is None:
            pytest.skip("nginx is not installed and this system has no apt-get to install it with")
        pytest.fail("nginx is not installed (apt-get install -y nginx; `make setup` installs it): "
                    "the load balancer configurations are checked with `nginx -t`")
    return found


def nginx_test(nginx: str, conf: Path) -> None:
    result = subprocess.run([nginx, "-t", "-p", str(conf.parent), "-c", str(conf), "-e",
                             str(conf.parent / "error.log")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"nginx -t {conf}:\n{result.stderr}"


def test_nginx_accepts_the_local_template(tmp_path: Path) -> None:
    nginx = nginx_binary()
    result = subprocess.run([str(REPLICAS_SH), "render", "--state-dir", str(tmp_path), "--replicas", "3",
                             "--port", "18001", "--lb-port", "18000"],
                            capture_output=True, text=True, timeout=30, env={**os.environ, "NGINX": nginx})
    assert result.returncode == 0, result.stderr
    conf = (tmp_path / "nginx.conf").read_text()
    assert not re.findall(r"@[A-Z_]+@", conf), "a placeholder was left unrendered"
    assert len(re.findall(r"server 127\.0\.0\.1:1800[123] ", conf)) == 3
    assert "daemon off;" in conf
    nginx_test(nginx, tmp_path / "nginx.conf")


def test_nginx_accepts_the_compose_config(tmp_path: Path) -> None:
    nginx = nginx_binary()
    conf = NGINX_CONF.read_text()
    # Outside Docker the service name does not resolve, and `resolve` needs nginx >= 1.27.3 (the image is
    # newer than Debian's nginx): check everything else.
    conf = conf.replace("server simulator:8000 resolve", "server 127.0.0.1:8000")
    conf = re.sub(r"^\s*resolver(_timeout)? [^;]+;", "", conf, flags=re.M)
    conf = conf.replace("pid /tmp/nginx.pid;", f"pid {tmp_path}/nginx.pid;")
    (tmp_path / "nginx.conf").write_text(conf)
    nginx_test(nginx, tmp_path / "nginx.conf")


# ---- Prometheus and Grafana -------------------------------------------------------------------------

def test_prometheus_scrapes_every_replica(services: dict[str, dict[str, Any]]) -> None:
    mounts = dict((target, source) for source, target in bind_mounts(services["prometheus"]))
    assert mounts["/etc/prometheus"] == PROMETHEUS.parent
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["zerosearch-simulator"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["simulator"] and sd["type"] == "A"
    assert str(sd["port"]) == env_of(services["simulator"])["ZS_PORT"]
    for rules in config.get("rule_files", []):
        assert (PROMETHEUS.parent / rules).is_file()


def test_promtool_accepts_the_config() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus); optional check")
    result = subprocess.run([promtool, "check", "config", str(PROMETHEUS)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_is_provisioned(services: dict[str, dict[str, Any]]) -> None:
    mounts = dict((target, source) for source, target in bind_mounts(services["grafana"]))
    assert mounts["/etc/grafana/provisioning"] == GRAFANA / "provisioning"
    dashboards_dir = next(target for target, source in mounts.items() if source == GRAFANA / "dashboards")
    (datasource,) = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((GRAFANA / "provisioning/dashboards/zerosearch.yml").read_text())["providers"]
    assert provider["options"]["path"] == dashboards_dir
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]
    assert queries, "the dashboard has no queries"
    return queries


def test_dashboard_queries_existing_metrics_and_labels() -> None:
    catalogue = metric_catalogue()
    used_families = set()
    for title, expr in dashboard_queries():
        for name in set(re.findall(r"\bzerosearch_\w+", expr)):
            assert name in catalogue, f"panel {title!r} queries {name}, which metrics.py does not export"
            used_families.add(catalogue[name][0])
        for name, matchers in re.findall(r"\b(zerosearch_\w+)\{([^}]*)\}", expr):
            for label in re.findall(r"(\w+)\s*(?:=~|!=|!~|=)", matchers):
                assert label in catalogue[name][1] | _TARGET_LABELS, f"{title!r}: {name} has no label {label!r}"
        for grouping in re.findall(r"\bby\s*\(([^)]*)\)", expr):
            metric_labels = set().union(*(catalogue[n][1] for n in re.findall(r"\bzerosearch_\w+", expr)))
            for label in (part.strip() for part in grouping.split(",")):
                assert label in metric_labels | _TARGET_LABELS, f"{title!r} groups by unknown label {label!r}"
    # The panels the brief asks for: every family the simulator exports is on the dashboard.
    assert used_families == {family for family, _ in catalogue.values()}


def test_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus); optional check")
    rules = [{"record": f"zerosearch:dashboard:{i}", "expr": expr.replace("$__rate_interval", "1m")}
             for i, (_, expr) in enumerate(dashboard_queries())]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_query_existing_metrics() -> None:
    catalogue = metric_catalogue()
    alerts = yaml.safe_load((PROMETHEUS.parent / "alerts.yml").read_text())
    for group in alerts["groups"]:
        for rule in group["rules"]:
            for name in re.findall(r"\bzerosearch_\w+", rule["expr"]):
                assert name in catalogue, f"alert {rule['alert']} queries {name}, not exported by metrics.py"


# ---- Kubernetes -------------------------------------------------------------------------------------

def k8s_resources(directory: Path) -> list[dict[str, Any]]:
    """The resources a kustomization lists (plain files and sub-kustomizations), without patches."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    resources: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            resources += k8s_resources(path)
        else:
            resources += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return resources


def by_kind(resources: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


@pytest.fixture(scope="module")
def k8s() -> list[dict[str, Any]]:
    return k8s_resources(K8S)


def test_k8s_simulator_deployment(k8s: list[dict[str, Any]]) -> None:
    deployment = by_kind(k8s, "Deployment", "simulator")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"  # model loading is slow
    assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] >= 600
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) == 1
    refs = {next(iter(k for k in ref if k.endswith("Ref"))): ref[next(k for k in ref if k.endswith("Ref"))]["name"]
            for ref in container["envFrom"]}
    assert refs == {"configMapRef": "zerosearch-simulator", "secretRef": "zerosearch-secrets"}
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(ports["http"])
    config = by_kind(k8s, "ConfigMap", "zerosearch-simulator")["data"]
    assert config["ZS_BACKEND"] == "vllm" and config["ZS_PORT"] == str(ports["http"])
    assert config["ZS_HOST"] == "0.0.0.0"
    assert config["ZS_MODEL"].startswith("sunhaonlp/Simulation_LLM_google_")
    assert "ZS_API_KEYS" in by_kind(k8s, "Secret", "zerosearch-secrets")["stringData"]
    assert "ZS_API_KEYS" not in config, "keys belong in the Secret"


def test_k8s_services_and_redis(k8s: list[dict[str, Any]]) -> None:
    for name, deployment_name in (("simulator", "simulator"), ("redis", "redis")):
        service = by_kind(k8s, "Service", name)
        pod_labels = by_kind(k8s, "Deployment", deployment_name)["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items(), f"Service {name} selects no pod"
    config = by_kind(k8s, "ConfigMap", "zerosearch-simulator")["data"]
    redis_port = by_kind(k8s, "Service", "redis")["spec"]["ports"][0]["port"]
    assert config["ZS_REDIS_URL"].startswith(f"redis://redis:{redis_port}/")
    (redis_container,) = by_kind(k8s, "Deployment", "redis")["spec"]["template"]["spec"]["containers"]
    assert "redis-cli" in redis_container["readinessProbe"]["exec"]["command"]


def test_k8s_autoscaler_uses_an_adapter_metric(k8s: list[dict[str, Any]]) -> None:
    hpa = by_kind(k8s, "HorizontalPodAutoscaler", "simulator")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "simulator"}
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    pod_metrics = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert "zerosearch_queue_depth" in pod_metrics
    adapter = yaml.safe_load((K8S / "prometheus-adapter-values.yaml").read_text())
    catalogue = metric_catalogue()
    exposed = {}
    for rule in adapter["rules"]["custom"]:
        series = re.match(r"(\w+)", rule["seriesQuery"]).group(1)
        assert series in catalogue, f"adapter rule reads {series}, which metrics.py does not export"
        assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
        exposed[rule["name"]["as"]] = rule
    assert set(pod_metrics) <= set(exposed), "every HPA metric needs a prometheus-adapter rule"


def test_k8s_overlays_build_with_kustomize() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the manifests are checked by the structural tests above")
    built = {}
    for overlay in (K8S, K8S / "cpu"):
        result = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        built[overlay.name] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    gpu, cpu = built["k8s"], built["cpu"]
    assert all(r["metadata"].get("namespace") == "zerosearch" for r in gpu if r["kind"] != "Namespace")
    (cpu_container,) = by_kind(cpu, "Deployment", "simulator")["spec"]["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in json.dumps(cpu_container["resources"])
    assert cpu_container["image"].startswith("zerosearch-simulator-cpu:")
    cpu_config = by_kind(cpu, "ConfigMap", "zerosearch-simulator")["data"]
    assert cpu_config["ZS_BACKEND"] == "transformers" and cpu_config["ZS_MODEL"] == "bundled"
    (gpu_container,) = by_kind(gpu, "Deployment", "simulator")["spec"]["template"]["spec"]["containers"]
    assert gpu_container["image"].startswith("zerosearch-simulator:")


# ---- Dockerfiles and the local script ---------------------------------------------------------------

@pytest.mark.parametrize(("dockerfile", "extra"), [
    ("services/simulator/Dockerfile", "simulator"),
    ("services/simulator/Dockerfile.cpu", "simulator"),
    ("services/trainer/Dockerfile", "trainer"),
])
def test_dockerfiles(dockerfile: str, extra: str) -> None:
    text = (ROOT / dockerfile).read_text()
    base_args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    (base,) = re.findall(r"^FROM (\S+)", text, re.M)
    base = base_args.get(base.strip("${}"), base)
    assert ":" in base and not base.endswith(":latest"), f"{dockerfile}: pin the base image ({base})"
    assert f'".[{extra}]"' in text
    for source in re.findall(r"^COPY (\S+) ", text, re.M):
        if source in ("configs", "data"):  # the trainer's recipes and samples, filled by their owners
            continue
        assert (ROOT / source).exists(), f"{dockerfile} copies {source}, which is not in the repository"
    if extra == "simulator":
        assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.M)
        assert 'ENTRYPOINT ["zerosearch", "serve", "--host", "0.0.0.0"]' in text
    else:
        assert 'zerosearch train --config' in text
    if dockerfile.endswith("Dockerfile") and extra == "simulator":
        assert base.startswith("vllm/vllm-openai:v")


def test_replicas_script_is_valid_bash() -> None:
    assert subprocess.run(["bash", "-n", str(REPLICAS_SH)], capture_output=True).returncode == 0
    result = subprocess.run([str(REPLICAS_SH), "--help"], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0 and "start" in result.stdout and "stop" in result.stdout
