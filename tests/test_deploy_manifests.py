"""Static checks of the deployment artifacts: Dockerfile, docker-compose.yml, Kubernetes
manifests (against the Kubernetes OpenAPI schemas shipped in kubernetes-validate, offline),
the Slack and Teams app manifests, and the example configuration."""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tomllib
import zipfile
from importlib.resources import files
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils

from bot.engine.intents import parse
from bot.commands import HELP_TEXT

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
OPTIONAL = K8S / "optional"
COMPONENTS = K8S / "components"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SLACK_MANIFEST = DEPLOY / "slack-app-manifest.yaml"
TEAMS = DEPLOY / "teams"
EXAMPLE_CONFIG = ROOT / "examples" / "srebot.toml"

# Oldest Kubernetes minor still commonly run, and the newest the schema package knows.
K8S_VERSIONS = ["1.29", kv_utils.latest_version()]
# Custom resources have no schema in kubernetes-validate; they get structural checks below.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
NOT_IN_KUSTOMIZATION = {"kustomization.yaml", "secret.example.yaml"}

SLACK_EVENTS = {"app_mention", "message.channels", "message.groups", "message.im", "message.mpim", "app_home_opened",
                "assistant_thread_started", "assistant_thread_context_changed"}
SLACK_SCOPES = {
    "app_mentions:read", "chat:write", "chat:write.public", "commands", "channels:history",
    "groups:history", "im:history", "mpim:history", "im:read", "files:write", "users:read", "assistant:write",
    "usergroups:read",
}
TEAMS_COMMANDS = {"help", "diagnose", "logs", "metrics", "cost", "incidents", "restart", "rollback", "status", "cancel"}
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "escalate", "bind", "impersonate", "*"}
APP_UID = 10001


# --- helpers ---------------------------------------------------------------------------------------
def load_docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifest_files() -> list[Path]:
    """Every resource file (a Component's files are patches, not resources)."""
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml" and COMPONENTS not in p.parents)


def kustomization_dirs() -> list[Path]:
    return sorted(p.parent for p in K8S.rglob("kustomization.yaml"))


def all_resources() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in manifest_files() for doc in load_docs(path)]


def resources(kind: str) -> list[dict]:
    return [doc for _, doc in all_resources() if doc["kind"] == kind]


def one(kind: str, name: str = "srebot") -> dict:
    found = [doc for doc in resources(kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --- Kubernetes: schemas -----------------------------------------------------------------------------
@pytest.mark.parametrize("path", manifest_files(), ids=rel)
def test_kubernetes_manifest_matches_schema(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{rel(path)} holds no resource"
    problems: list[str] = []
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys()
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            assert doc["metadata"]["name"] and doc["spec"], "custom resource without name or spec"
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path)
                problems.append(f"{doc['kind']}/{doc['metadata']['name']} (k8s {version}): {where}: {exc.message}")
    assert not problems, f"{rel(path)}:\n" + "\n".join(problems)


def test_schema_checker_rejects_broken_manifests() -> None:
    """The schemas really load (offline, from the package) and catch typos and wrong types."""
    deployment = one("Deployment")
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/readyz"}
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    for broken in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


# --- Kubernetes: kustomizations ----------------------------------------------------------------------
@pytest.mark.parametrize("directory", kustomization_dirs(), ids=rel)
def test_kustomization_lists_every_file_in_its_dir(directory: Path) -> None:
    """A kustomization lists every file of its directory (as a resource, or as a Component's patch); an
    overlay names other kustomization directories only."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    component = kustomization["kind"] == "Component"
    assert (kustomization["apiVersion"], kustomization["kind"]) in {
        ("kustomize.config.k8s.io/v1beta1", "Kustomization"), ("kustomize.config.k8s.io/v1alpha1", "Component")}
    assert component == (COMPONENTS in directory.parents), "Components live under components/, only there"
    listed = kustomization.get("resources", []) + [p["path"] for p in kustomization.get("patches", [])]
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    for entry in listed:
        if entry.startswith("../"):
            assert (directory / entry / "kustomization.yaml").is_file(), f"{entry} is not a kustomization"
            continue
        assert "/" not in entry, f"{entry}: a kustomization lists only files of its own directory"
        assert (directory / entry).is_file(), f"{entry} is listed but does not exist"
    for entry in kustomization.get("components", []):
        assert (directory / entry / "kustomization.yaml").is_file(), f"{entry} is not a component"
    present = {p.name for p in directory.glob("*.yaml")} - NOT_IN_KUSTOMIZATION
    assert present == {e for e in listed if "/" not in e}, f"not listed: {sorted(present - set(listed))}"


def kustomize(directory: Path) -> list[dict]:
    """What `kubectl apply -k directory` would apply (kubectl's built-in kustomize, offline)."""
    built = subprocess.run([shutil.which("kubectl") or "kubectl", "kustomize", str(directory)], check=True,
                           capture_output=True, text=True, timeout=60)
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


def ingress_paths(docs: list[dict]) -> set[str]:
    return {p["path"] for doc in docs if doc["kind"] == "Ingress"
            for rule in doc["spec"]["rules"] for p in rule["http"]["paths"]}


def test_teams_is_routed_only_when_its_component_is_applied() -> None:
    """Slack's webhook is the only public path by default; Teams' /api/messages is opt-in (components/teams,
    applied by optional/ingress-teams), and the result is still a valid Ingress of the srebot Service."""
    assert ingress_paths(kustomize(OPTIONAL / "ingress")) == {"/slack/events"}
    with_teams = kustomize(OPTIONAL / "ingress-teams")
    assert ingress_paths(with_teams) == {"/slack/events", "/api/messages"}
    [ingress] = with_teams
    assert ingress["metadata"]["namespace"] == "srebot"
    for rule in ingress["spec"]["rules"]:
        assert {p["backend"]["service"]["name"] for p in rule["http"]["paths"]} == {"srebot"}
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(ingress, version, strict=True)
    assert not any(doc["kind"] == "Ingress" for doc in kustomize(K8S)), "the base exposes nothing publicly"


def test_base_kustomization_excludes_secret_and_optional_parts() -> None:
    base = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = base["resources"]
    assert "secret.example.yaml" not in listed
    assert not any("optional" in entry for entry in listed)
    assert base["namespace"] == "srebot"
    base_kinds = {(doc["kind"], doc["metadata"]["name"]) for entry in listed for doc in load_docs(K8S / entry)}
    assert ("Role", "srebot-actions") not in base_kinds
    assert ("RoleBinding", "srebot-actions") not in base_kinds
    assert not any(kind in {"Role", "RoleBinding", "ServiceMonitor"} for kind, _ in base_kinds)
    for kind in ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap",
                 "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert any(k == kind for k, _ in base_kinds), f"base has no {kind}"
    # the image the kustomization pins is the one the Deployment uses
    image = one("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.split(":")[0] in {entry["name"] for entry in base["images"]}


def test_namespaced_base_resources_live_in_srebot() -> None:
    base = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for entry in base["resources"]:
        for doc in load_docs(K8S / entry):
            if doc["kind"] in {"Namespace", "ClusterRole", "ClusterRoleBinding"}:
                assert "namespace" not in doc["metadata"]
            else:
                assert doc["metadata"].get("namespace") == "srebot", f"{entry}: {doc['kind']}"


# --- Kubernetes: Deployment ----------------------------------------------------------------------------
def test_every_deployment_is_hardened_and_probed() -> None:
    deployments = resources("Deployment")
    assert deployments
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        pod_sc = pod.get("securityContext", {})
        mounts_by_volume = {}
        for container in pod["containers"]:
            name = f"{deployment['metadata']['name']}/{container['name']}"
            sc = container.get("securityContext", {})
            assert sc.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem"
            assert (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))) is True, f"{name}: runAsNonRoot"
            assert sc.get("runAsUser", pod_sc.get("runAsUser", APP_UID)) != 0
            assert sc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation"
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: capabilities"
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", f"{name}: seccomp"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                port = container[probe]["httpGet"]["port"]
                assert ports.get(port, port) == 3000, f"{name}: {probe} port"
            for section in ("requests", "limits"):
                assert {"cpu", "memory"} <= container["resources"][section].keys(), f"{name}: resources.{section}"
            for mount in container.get("volumeMounts", []):
                mounts_by_volume[mount["name"]] = mount["mountPath"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        tmp = [v for v, path in mounts_by_volume.items() if path == "/tmp"]
        assert tmp and "emptyDir" in volumes[tmp[0]], "an emptyDir must be mounted at /tmp"


def test_srebot_deployment_scale_out_settings() -> None:
    deployment = one("Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] == 2
    assert pod["terminationGracePeriodSeconds"] == 45
    assert pod["enableServiceLinks"] is False, "Service env vars would collide with SREBOT_* settings"
    assert pod["serviceAccountName"] == one("ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"]["runAsUser"] == APP_UID
    assert pod["topologySpreadConstraints"]
    assert pod["affinity"]["podAntiAffinity"]
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod_labels = spec["template"]["metadata"]["labels"]
    assert matches(spec["selector"]["matchLabels"], pod_labels)
    for constraint in pod["topologySpreadConstraints"]:
        assert matches(constraint["labelSelector"]["matchLabels"], pod_labels)


def test_srebot_deployment_env_secret_and_config() -> None:
    pod = one("Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    refs = {name: e["valueFrom"]["secretKeyRef"] for name, e in env.items() if "valueFrom" in e}
    expected = {
        "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "MICROSOFT_APP_ID",
        "MICROSOFT_APP_PASSWORD", "MICROSOFT_APP_TENANT_ID", "DATABASE_URL",
        "CONTROL_PLANE_CLIENT_SECRET", "GOOGLE_API_KEY",
    }
    assert expected <= refs.keys()
    for name, ref in refs.items():
        assert ref["name"] == "srebot-secrets"
        assert ref["key"] == name
    assert refs["DATABASE_URL"].get("optional", False) is False, "DATABASE_URL is required"
    assert refs["SLACK_APP_TOKEN"]["optional"] is True
    assert refs["GOOGLE_API_KEY"]["optional"] is True

    # SREBOT_CONFIG points at srebot.toml from the ConfigMap srebot-config
    config_path = env["SREBOT_CONFIG"]["value"]
    assert config_path == "/etc/srebot/srebot.toml"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mount = next(m for m in container["volumeMounts"] if config_path.startswith(m["mountPath"]))
    assert mount.get("readOnly") is True
    source = volumes[mount["name"]]["configMap"]
    assert source["name"] == "srebot-config"
    file_name = config_path[len(mount["mountPath"]):].lstrip("/") if "subPath" not in mount else mount["subPath"]
    assert file_name == "srebot.toml"
    assert "srebot.toml" in one("ConfigMap", "srebot-config")["data"]

    env_from = [e["configMapRef"]["name"] for e in container.get("envFrom", [])]
    for name in env_from:
        one("ConfigMap", name)


def test_secret_example_covers_every_key_and_is_not_applied() -> None:
    secret = load_docs(K8S / "secret.example.yaml")
    assert len(secret) == 1 and secret[0]["kind"] == "Secret"
    assert secret[0]["metadata"]["name"] == "srebot-secrets"
    text = (K8S / "secret.example.yaml").read_text()
    container = one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    for e in container["env"]:
        if "valueFrom" in e:
            assert re.search(rf"^\s*#?\s*{e['name']}:", text, re.M), f"{e['name']} missing from the example"


def test_env_configmap_holds_no_secrets() -> None:
    data = one("ConfigMap", "srebot-env")["data"]
    for key, value in data.items():
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), key
        assert not re.search(r"TOKEN|PASSWORD|SECRET|API_KEY|DATABASE_URL", key), f"{key} belongs in the Secret"
        assert isinstance(value, str)


def test_configmap_config_loads(tmp_path: Path) -> None:
    from bot.config import load_settings

    path = tmp_path / "srebot.toml"
    path.write_text(one("ConfigMap", "srebot-config")["data"]["srebot.toml"])
    settings = load_settings(env={}, config_path=str(path))
    assert settings.services
    assert settings.defaults.window_seconds > 0


# --- Kubernetes: Service, HPA, PDB, monitoring -----------------------------------------------------------
def test_service_targets_the_pods() -> None:
    service = one("Service")
    deployment = one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert matches(service["spec"]["selector"], pod_labels)
    (port,) = service["spec"]["ports"]
    assert port["port"] == 80
    container_ports = {p["name"]: p["containerPort"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert container_ports.get(port["targetPort"], port["targetPort"]) == 3000
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "3000"
    assert annotations["prometheus.io/path"] == "/metrics"


def test_hpa_and_pdb() -> None:
    hpa = one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "srebot"}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 4)
    (metric,) = spec["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}

    pdb = one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert matches(pdb["spec"]["selector"]["matchLabels"], one("Deployment")["spec"]["template"]["metadata"]["labels"])


def test_servicemonitor_selects_the_service() -> None:
    monitor = load_docs(OPTIONAL / "monitoring" / "servicemonitor.yaml")[0]
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor")
    service = one("Service")
    assert matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert service["metadata"]["namespace"] in monitor["spec"]["namespaceSelector"]["matchNames"]
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"


def test_ingress_exposes_only_the_webhooks() -> None:
    ingress = one("Ingress")
    paths = {p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
    assert paths == {"/slack/events"}
    for rule in ingress["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            assert p["backend"]["service"]["name"] == "srebot"


# --- Kubernetes: RBAC ------------------------------------------------------------------------------
def test_read_clusterrole_is_read_only() -> None:
    role = one("ClusterRole", "srebot-read")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        verbs = set(rule["verbs"])
        assert not verbs & WRITE_VERBS, f"write verbs in srebot-read: {verbs & WRITE_VERBS}"
        assert verbs <= {"get", "list", "watch"}
        assert "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        assert "secrets" not in rule["resources"]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted[(group, resource)] = verbs
    for key in [("apps", "deployments"), ("apps", "replicasets"), ("", "pods"), ("", "pods/log"),
                ("", "events"), ("", "namespaces")]:
        assert granted.get(key) == {"get", "list", "watch"}, key
    binding = one("ClusterRoleBinding", "srebot-read")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "srebot-read"}
    sa = one("ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": sa["metadata"]["namespace"]}]


def test_actions_role_is_separate_and_minimal() -> None:
    actions = OPTIONAL / "actions"
    role = next(d for d in load_docs(actions / "role.yaml") if d["kind"] == "Role")
    binding = next(d for d in load_docs(actions / "rolebinding.yaml") if d["kind"] == "RoleBinding")
    assert role["metadata"]["name"] == "srebot-actions"
    # no namespace: it is chosen per target namespace with `kubectl apply -k ... -n NS`
    assert "namespace" not in role["metadata"] and "namespace" not in binding["metadata"]
    kustomization = yaml.safe_load((actions / "kustomization.yaml").read_text())
    assert "namespace" not in kustomization
    assert "-n " in (actions / "kustomization.yaml").read_text(), "the comment explains how to enable it per namespace"
    (rule,) = role["rules"]
    assert rule["apiGroups"] == ["apps"]
    assert set(rule["resources"]) == {"deployments", "deployments/scale"}
    assert rule["verbs"] == ["patch"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "srebot-actions"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "srebot", "namespace": "srebot"}]
    assert not any(doc["kind"] in {"Role", "RoleBinding"} for path in K8S.glob("*.yaml") for doc in load_docs(path))


# --- docker compose ---------------------------------------------------------------------------------
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_matches_compose_spec() -> None:
    schema = json.loads((files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_cls(schema).iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "; ".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_compose_services_and_health_checks() -> None:
    doc = compose()
    services = doc["services"]
    assert {"srebot", "postgres", "prometheus", "loki", "grafana"} <= services.keys()
    assert services["postgres"]["image"].startswith("postgres:16")
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
        assert check["test"][0] in {"CMD", "CMD-SHELL"}
    declared = set(doc.get("volumes", {}))
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"


def test_compose_srebot_wiring() -> None:
    services = compose()["services"]
    srebot = services["srebot"]
    assert srebot["build"]["context"] == "."
    assert srebot["depends_on"]["postgres"]["condition"] == "service_healthy"
    env = srebot["environment"]
    assert env["DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert "@postgres:5432/" in env["DATABASE_URL"]
    assert env["PROMETHEUS_URL"] == "http://prometheus:9090"
    assert env["LOKI_URL"] == "http://loki:3100"
    assert env["GRAFANA_URL"]
    mounts = dict(v.split(":")[:2] for v in srebot["volumes"])
    assert mounts["./examples/srebot.toml"] == env["SREBOT_CONFIG"]
    assert srebot["env_file"] == [{"path": ".env", "required": False}]
    assert srebot["read_only"] is True and "/tmp" in srebot["tmpfs"]
    pg = services["postgres"]["environment"]
    assert env["DATABASE_URL"] == (
        f"postgresql+asyncpg://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}"
    )


def test_compose_exposes_nothing_beyond_this_machine() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_compose_prometheus_and_grafana_config() -> None:
    prometheus = yaml.safe_load((DEPLOY / "compose" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    srebot = jobs["srebot"]
    assert srebot.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in srebot["static_configs"] for t in sc["targets"]]
    assert targets == ["srebot:3000"]
    datasources = yaml.safe_load(
        (DEPLOY / "compose" / "grafana" / "provisioning" / "datasources" / "datasources.yaml").read_text()
    )
    urls = {ds["type"]: ds["url"] for ds in datasources["datasources"]}
    assert urls == {"prometheus": "http://prometheus:9090", "loki": "http://loki:3100"}


def test_compose_prometheus_config_passes_promtool() -> None:
    """The same promtool the Prometheus fakes use (Debian's prometheus package, installed by .ci/run)."""
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    assert Path(promtool).exists(), "promtool not found: apt-get install prometheus (see .ci/run)"
    result = subprocess.run(
        [promtool, "check", "config", str(DEPLOY / "compose" / "prometheus" / "prometheus.yml")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- examples/srebot.toml ------------------------------------------------------------------------------
def test_example_config_loads() -> None:
    from bot.config import load_settings

    raw = tomllib.loads(EXAMPLE_CONFIG.read_text())
    assert {"defaults", "thresholds", "services"} <= raw.keys()
    settings = load_settings(env={}, config_path=str(EXAMPLE_CONFIG))
    assert 2 <= len(settings.services) <= 3
    checkout = settings.service("checkout-api")
    assert checkout is not None and checkout.namespace == "shop"
    assert "{service}" in checkout.metrics["error_rate"]


# --- Slack ------------------------------------------------------------------------------------------
def test_slack_manifest() -> None:
    manifest = yaml.safe_load(SLACK_MANIFEST.read_text())
    assert manifest["_metadata"]["major_version"] == 1
    info = manifest["display_information"]
    assert info["name"] == "srebot" and len(info["description"]) <= 140
    assert manifest["features"]["bot_user"]["display_name"] == "srebot"
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True  # open investigations, pending approvals
    assistant = manifest["features"]["assistant_view"]  # Slack's AI-app surface: status, streamed steps, prompts
    assert assistant["assistant_description"] and 1 <= len(assistant["suggested_prompts"]) <= 4
    settings = manifest["settings"]
    assert set(settings["event_subscriptions"]["bot_events"]) == SLACK_EVENTS
    assert len(settings["event_subscriptions"]["bot_events"]) == len(SLACK_EVENTS)
    assert "user_events" not in settings["event_subscriptions"]
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == SLACK_SCOPES
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == "/sre"
    assert command["usage_hint"] and len(command["usage_hint"]) <= 1000
    urls = [command["url"], settings["event_subscriptions"]["request_url"], settings["interactivity"]["request_url"]]
    assert all(url == "https://YOUR_HOST/slack/events" for url in urls)
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["socket_mode_enabled"] is False
    assert "connections:write" in SLACK_MANIFEST.read_text(), "comment on switching to Socket Mode"


# --- Teams ------------------------------------------------------------------------------------------
def teams_manifest() -> dict:
    return json.loads((TEAMS / "manifest.json").read_text())


def test_teams_manifest() -> None:
    manifest = teams_manifest()
    major, minor = (int(x) for x in manifest["manifestVersion"].split("."))
    assert (major, minor) >= (1, 22)
    assert manifest["$schema"].endswith(f"/v{manifest['manifestVersion']}/MicrosoftTeams.schema.json")
    assert manifest["id"] == "{{MICROSOFT_APP_ID}}"
    assert len(manifest["name"]["short"]) <= 30
    assert len(manifest["description"]["short"]) <= 80 and len(manifest["description"]["full"]) <= 4000
    assert re.fullmatch(r"#[0-9A-Fa-f]{6}", manifest["accentColor"])
    (bot,) = manifest["bots"]
    assert bot["botId"] == "{{MICROSOFT_APP_ID}}"
    assert set(bot["scopes"]) == {"personal", "team", "groupChat"}
    assert bot["supportsFiles"] is False
    for command_list in bot["commandLists"]:
        assert set(command_list["scopes"]) <= set(bot["scopes"])
        assert len(command_list["commands"]) <= 10
        titles = {c["title"] for c in command_list["commands"]}
        assert titles == TEAMS_COMMANDS
        for title in titles - {"help"}:  # every command is one the bot understands, as its help text says
            assert re.search(rf"(^|[•/·] ){title}\b", HELP_TEXT, re.M), title
        assert parse("help").intent == "help"
        for c in command_list["commands"]:
            assert len(c["title"]) <= 32 and len(c["description"]) <= 128
    assert manifest["validDomains"] == ["{{HOST}}"]
    assert len(manifest["developer"]["name"]) <= 32


def test_teams_icons() -> None:
    manifest = teams_manifest()
    assert png_size(TEAMS / manifest["icons"]["color"]) == (192, 192)
    assert png_size(TEAMS / manifest["icons"]["outline"]) == (32, 32)
    for icon in ("color.png", "outline.png"):
        assert (TEAMS / icon).stat().st_size < 4096, "placeholder icons stay tiny"


def test_teams_package_builds_zip(tmp_path: Path) -> None:
    sys.path.insert(0, str(TEAMS))
    try:
        import package as teams_package
    finally:
        sys.path.remove(str(TEAMS))
    app_id = "11111111-2222-3333-4444-555555555555"
    out = teams_package.build(app_id, "srebot.example.com", "Platform SRE", tmp_path / "app.zip")
    with zipfile.ZipFile(out) as zf:
        assert sorted(zf.namelist()) == ["color.png", "manifest.json", "outline.png"]
        text = zf.read("manifest.json").decode()
        assert zf.read("color.png") == (TEAMS / "color.png").read_bytes()
    assert "{{" not in text
    manifest = json.loads(text)
    assert manifest["id"] == app_id and manifest["bots"][0]["botId"] == app_id
    assert manifest["validDomains"] == ["srebot.example.com"]
    assert manifest["developer"]["websiteUrl"] == "https://srebot.example.com"
    # the generator reproduces the committed icons
    assert teams_package.color_icon() == (TEAMS / "color.png").read_bytes()
    assert teams_package.outline_icon() == (TEAMS / "outline.png").read_bytes()
    with pytest.raises(ValueError):
        teams_package.build("not-a-guid", "srebot.example.com", "x", tmp_path / "bad.zip")
    with pytest.raises(ValueError):
        teams_package.build(app_id, "https://srebot.example.com/", "x", tmp_path / "bad.zip")


# --- Dockerfile ---------------------------------------------------------------------------------------
def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "dangling line continuation"
    return instructions


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            result.append([])
        elif not result:
            assert instruction[0] in {"ARG"}, f"{instruction[0]} before the first FROM"
            continue
        result[-1].append(instruction)
    return result


def test_dockerfile_is_multi_stage_slim_python() -> None:
    known = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
             "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}
    instructions = dockerfile_instructions()
    assert all(keyword in known for keyword, _ in instructions), [k for k, _ in instructions if k not in known]
    args = dict(a.split("=", 1) for k, a in instructions if k == "ARG" and "=" in a)
    froms = [a for k, a in instructions if k == "FROM"]
    assert len(froms) >= 2, "multi-stage build"
    resolved = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], f) for f in froms]
    assert resolved[0].lower().endswith("as builder")
    assert resolved[-1].split()[0] == "python:3.11-slim"
    copies = [a for k, a in stages()[-1] if k == "COPY"]
    assert any(a.startswith("--from=builder") and "/opt/venv" in a for a in copies)


def test_dockerfile_runtime_stage() -> None:
    final = stages()[-1]
    keyword_args: dict[str, list[str]] = {}
    for keyword, args in final:
        keyword_args.setdefault(keyword, []).append(args)
    user = keyword_args["USER"][-1].split(":")[0]
    assert user not in {"root", "0"} and int(user) == APP_UID
    assert int(user) == one("Deployment")["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    (healthcheck,) = keyword_args["HEALTHCHECK"]
    assert "/healthz" in healthcheck and "curl" not in healthcheck and "CMD" in healthcheck
    assert keyword_args["EXPOSE"] == ["3000"]
    assert json.loads(keyword_args["ENTRYPOINT"][-1]) == ["srebot"]
    assert json.loads(keyword_args["CMD"][-1]) == ["serve"]
    env: dict[str, str] = {}
    for args in keyword_args["ENV"]:
        for item in shlex.split(args):
            key, _, value = item.partition("=")
            env[key] = value
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["DATABASE_URL"] == "sqlite+aiosqlite:////data/srebot.db"
    assert "/data" in keyword_args["VOLUME"][-1]
    runs = " ".join(keyword_args["RUN"])
    assert f"--uid {APP_UID}" in runs and "chown 10001:10001 /data" in runs


def test_dockerfile_copies_every_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in include}
    assert "srebot" in pyproject["project"]["scripts"]
    builder = stages()[0]
    # every COPY source of the builder stage (the last word is the destination)
    copied = {word.rstrip("/") for k, a in builder if k == "COPY" for word in a.split()[:-1] if not word.startswith("--")}
    assert packages <= copied, f"not copied into the builder: {packages - copied}"
    assert {"pyproject.toml", pyproject["project"]["readme"], "constraints.txt"} <= copied
    installs = " ".join(a for k, a in builder if k == "RUN")
    assert "pip install -c constraints.txt ." in installs  # the versions the tests ran with
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", ".dockerignore is an allow-list: .env, .venv, tests stay out"
    for name in [*packages, "pyproject.toml", "README.md", "constraints.txt"]:
        assert f"!{name}/" in ignore or f"!{name}" in ignore, f"{name} not allowed into the build context"
    assert not any(line.startswith("!") and (".env" in line or "tests" in line) for line in ignore)


# --- deploy/README.md -------------------------------------------------------------------------------
def test_deploy_readme_mentions_only_existing_files() -> None:
    text = (DEPLOY / "README.md").read_text()
    tokens = set(re.findall(r"`([\w./-]+(?:\.(?:ya?ml|json|toml|py|md|png)|/))`", text))
    assert tokens
    missing = []
    for token in tokens:
        if token.startswith("/"):
            continue  # a path inside the container
        if not any((base / token).exists() for base in (DEPLOY, ROOT, TEAMS)):
            missing.append(token)
    assert not missing, f"deploy/README.md names files that do not exist: {sorted(missing)}"
    for command in ("kubectl apply -k deploy/kubernetes", "optional/actions -n", "docker compose up"):
        assert command in text


def test_read_role_covers_every_kind_the_diagnosis_reads_but_secrets() -> None:
    from tools.kubernetes import PATHS

    role = next(d for d in load_docs(K8S / "rbac.yaml") if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "srebot-read")
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    for path in PATHS.values():
        parts = path.split("/")
        group = "" if parts[1] == "api" else parts[2]
        resource = parts[-1]
        if resource != "secrets":  # asked metadata-only; refused, a missing Secret is known from events
            assert (group, resource, "list") in granted, path
    assert ("", "pods/log", "get") in granted


def test_the_replicas_the_hpa_may_run_fit_postgresqls_connections() -> None:
    """Scaled to its maximum during a rollout, srebot must not be refused connections by its own database
    ('too many clients') in the middle of an incident: the pods' pools fit PostgreSQL's default budget."""
    from bot.config import load_settings

    env = one("ConfigMap", "srebot-env")["data"]
    settings = load_settings(env={k: env[k] for k in ("SREBOT_DB_POOL_SIZE", "SREBOT_DB_POOL_OVERFLOW") if k in env})
    per_replica = settings.db_pool_size + settings.db_pool_overflow + 4  # its lease and its event claims
    surge = one("Deployment")["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    pods = one("HorizontalPodAutoscaler")["spec"]["maxReplicas"] + surge
    assert pods * per_replica <= 100 - 3, f"{pods} pods x {per_replica} connections"  # max_connections less reserved
