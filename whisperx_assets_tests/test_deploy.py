"""The deployment files in deploy/ pass their tools' schemas and agree with each other.

No container engine or cluster runs here, so the schemas are what checks them: the compose file against the
Compose Specification, the Helm values against the Dagster chart's values.schema.json (with the Kubernetes
definitions it refers to), the scale-out instance against Dagster's own config schema. Sources of the vendored
schemas: schemas/README.md.
"""

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from dagster._config import process_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster._core.workspace.config_schema import process_workspace_config
from dagster_docker import DockerRunLauncher
from dagster_postgres import DagsterPostgresStorage
from referencing import Registry, Resource

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
SCHEMAS = Path(__file__).parent / "schemas"
SERVICES = {"postgres", "seaweedfs", "user-code", "webserver", "daemon"}
# Where the chart's values.schema.json expects the Kubernetes definitions.
K8S_DEFINITIONS = "https://raw.githubusercontent.com/yannh/kubernetes-json-schema/master/v1.19.0/_definitions.json"


def _load(path: Path):
    return yaml.safe_load(path.read_text())


def _schema(name: str) -> dict:
    return json.loads((SCHEMAS / name).read_text())


# --- docker compose ------------------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$(?:(\$)|\{(\w+)(?:(:?[-?])([^}]*))?\}|(\w+))")


def _interpolate(node, env: dict):
    """Compose's variable substitution (${X}, ${X:-default}, ${X:?error}, $$), stricter than compose: a
    variable that is neither set nor defaulted is an error, not an empty string."""
    if isinstance(node, dict):
        return {key: _interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate(value, env) for value in node]
    if not isinstance(node, str):
        return node

    def substitute(match):
        escaped, name, operator, argument, bare = match.groups()
        if escaped:
            return "$"
        value = env.get(name or bare)
        if operator in (":-", "-"):
            return value if value or (operator == "-" and value is not None) else argument
        if value is None or (operator == ":?" and not value):
            raise KeyError(f"{name or bare} is not set ({argument or 'no default'})")
        return value

    return _VARIABLE.sub(substitute, node)


def _env_file(path: Path) -> dict:
    lines = (line.strip() for line in path.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


@pytest.fixture(scope="module")
def compose() -> dict:
    """compose.yaml as `docker compose config` would see it with .env.example as its .env."""
    return _interpolate(_load(DEPLOY / "compose.yaml"), _env_file(DEPLOY / ".env.example"))


@pytest.fixture(scope="module")
def scale_out() -> dict:
    return _load(DEPLOY / "dagster.scale-out.yaml")


def _compose_errors(document: dict) -> list[str]:
    schema = _schema("compose-spec.json")
    validator = jsonschema.Draft7Validator(schema)  # its $schema: draft-07
    return [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(document)]


def test_compose_matches_the_compose_spec(compose):
    assert _compose_errors(compose) == []
    assert set(compose["services"]) == SERVICES
    broken = copy.deepcopy(compose)
    broken["services"]["webserver"]["gpus_per_run"] = 1
    assert _compose_errors(broken)


def test_compose_secrets_come_from_the_env_file():
    raw = _load(DEPLOY / "compose.yaml")
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD|S3_SECRET_ACCESS_KEY|POSTGRES_USER|S3_ACCESS_KEY_ID"):
        _interpolate(raw, {})
    text = (DEPLOY / "compose.yaml").read_text()
    secrets = {v for k, v in _env_file(DEPLOY / ".env.example").items() if "PASSWORD" in k or "SECRET" in k}
    assert secrets and not any(secret in text for secret in secrets)
    assert ".env" in (DEPLOY / ".gitignore").read_text().split()


def test_published_ports_are_loopback_only(compose):
    published = {name: service.get("ports", []) for name, service in compose["services"].items()}
    assert published["webserver"] == ["127.0.0.1:3000:3000"]
    assert all(port.startswith("127.0.0.1:") for ports in published.values() for port in ports), published
    command = compose["services"]["webserver"]["command"]
    assert command[command.index("-h") + 1] == "0.0.0.0"  # reachable through the published port


def test_every_instance_user_gets_the_postgres_url(compose, scale_out):
    services = compose["services"]
    image = services["user-code"]["image"]
    dagster_services = {name for name, service in services.items() if service.get("image") == image}
    assert dagster_services == {"user-code", "webserver", "daemon"}
    for name in dagster_services:
        url = services[name]["environment"]["DAGSTER_POSTGRES_URL"]
        assert url.startswith("postgresql+psycopg2://dagster:") and url.endswith("@postgres:5432/dagster"), name
    # The launcher copies each name from the daemon's environment and refuses to launch a run if one is unset.
    env_vars = scale_out["run_launcher"]["config"]["env_vars"]
    assert "DAGSTER_POSTGRES_URL" in env_vars
    assert set(env_vars) <= set(services["daemon"]["environment"])


def test_runs_start_in_the_user_code_image_on_the_compose_network(compose, scale_out):
    services, launcher = compose["services"], scale_out["run_launcher"]["config"]
    assert services["user-code"]["environment"]["DAGSTER_CURRENT_IMAGE"] == services["user-code"]["image"]
    assert "image" not in launcher  # the image the code location reports is the one runs start in
    assert launcher["network"] == compose["networks"]["dagster"]["name"]
    assert all(service["networks"] == ["dagster"] for service in services.values())
    named_volumes = {volume.get("name") for volume in compose["volumes"].values() if volume}
    assert {mount.split(":")[0] for mount in launcher["container_kwargs"]["volumes"]} <= named_volumes
    assert launcher["container_kwargs"]["device_requests"] == [{"driver": "nvidia", "count": 1,
                                                                 "capabilities": [["gpu"]]}]


def test_compose_services_start_after_what_they_need_is_healthy(compose):
    services = compose["services"]
    assert all("healthcheck" in service for service in services.values())
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
    assert set(services["daemon"]["depends_on"]) == {"user-code"}
    assert set(services["user-code"]["depends_on"]) == {"postgres", "seaweedfs"}


def test_compose_workspace_loads_the_code_server(compose):
    workspace = _load(DEPLOY / "workspace.compose.yaml")
    assert process_workspace_config(workspace).success
    server = workspace["load_from"][0]["grpc_server"]
    local = _load(REPO / "workspace.yaml")["load_from"][0]["python_module"]
    assert (server["host"], server["location_name"]) == ("user-code", local["location_name"])
    assert str(server["port"]) in compose["services"]["user-code"]["healthcheck"]["test"]
    for name in ("webserver", "daemon"):
        service = compose["services"][name]
        mounts = dict(mount.split(":")[:2] for mount in service["volumes"])
        assert mounts["./workspace.compose.yaml"] == service["command"][service["command"].index("-w") + 1]
        assert mounts["./dagster.scale-out.yaml"] == service["environment"]["DAGSTER_HOME"] + "/dagster.yaml"


# --- scale-out instance (dagster.yaml for compose) -----------------------------------------------------------


def _instance_config(text: str, home: Path) -> dict:
    (home / "dagster.yaml").write_text(text)
    config, _ = dagster_instance_config(str(home))
    return config


def test_scale_out_instance_config(tmp_path, monkeypatch, scale_out):
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", "postgresql+psycopg2://dagster:x@postgres:5432/dagster")
    config = _instance_config((DEPLOY / "dagster.scale-out.yaml").read_text(), tmp_path)
    # The pluggable parts are checked against their own classes' schemas too.
    for config_type, section in ((DagsterPostgresStorage.config_type(), config["storage"]["postgres"]),
                                 (DockerRunLauncher.config_type(), config["run_launcher"]["config"])):
        result = process_config(config_type, section)
        assert result.success, result.errors
    assert config["storage"] == _load(DEPLOY / "storage.postgres.yaml")["storage"]  # one variable everywhere
    assert config["run_launcher"]["class"] == "DockerRunLauncher"
    broken = dict(scale_out, run_retries={"enabled": True, "max_retries": "two"})
    with pytest.raises(DagsterInvalidConfigError):
        _instance_config(yaml.safe_dump(broken), tmp_path)


# --- Helm values for dagster/dagster ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def values() -> dict:
    return _load(DEPLOY / "helm" / "values.yaml")


def _refs(node) -> set[str]:
    text = json.dumps(node)
    return set(re.findall(r'"#/\$defs/([^"]+)"', text))


def _as_override(schema: dict) -> dict:
    """The chart's schema for a values file given with -f: Helm validates it merged over the chart's own
    values, so a required key the chart already sets may be missing here; lists replace the chart's whole, so
    the objects in them (and what those hold) must be complete."""
    schema = copy.deepcopy(schema)
    definitions = schema["$defs"]
    in_lists, pending = set(), set()

    def collect(node):
        if isinstance(node, dict):
            if "items" in node:
                pending.update(_refs(node["items"]))
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(schema)
    while pending:
        name = pending.pop()
        if name not in in_lists:
            in_lists.add(name)
            pending |= _refs(definitions[name])
    for name, definition in definitions.items():
        if name not in in_lists:
            definition.pop("required", None)
    schema.pop("required")
    return schema


def _errors(schema: dict, document) -> list[str]:
    kubernetes = Resource.from_contents(_schema("kubernetes-v1.25.0-definitions.json"))
    registry = Registry().with_resource(K8S_DEFINITIONS, kubernetes)
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    return [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(document)]


def _helm_errors(document: dict) -> list[str]:
    return _errors(_as_override(_schema("dagster-helm-values.schema.json")), document)


def _pod_spec_errors(pod_spec_config: dict) -> list[str]:
    """podSpecConfig is free-form to the chart; dagster-k8s reads it, in snake_case, into a Kubernetes PodSpec."""
    camel = {re.sub(r"_([a-z])", lambda m: m[1].upper(), key): value for key, value in pod_spec_config.items()}
    definition = _schema("kubernetes-v1.25.0-definitions.json")["definitions"]["io.k8s.api.core.v1.PodSpec"]
    unknown = [f"{key}: not a PodSpec field" for key in camel if key not in definition["properties"]]
    pod_spec = {"$ref": f"{K8S_DEFINITIONS}#/definitions/io.k8s.api.core.v1.PodSpec"}
    return unknown + _errors(pod_spec, {**camel, "containers": [{"name": "run"}]})


def test_helm_values_match_the_chart_schema(values):
    assert _helm_errors(values) == []
    misspelled = copy.deepcopy(values)
    launcher = misspelled["runLauncher"]["config"]["k8sRunLauncher"]
    launcher["resource"] = launcher.pop("resources")
    assert _helm_errors(misspelled)
    incomplete = copy.deepcopy(values)
    del incomplete["dagster-user-deployments"]["deployments"][0]["port"]  # a list item: nothing to merge with
    assert _helm_errors(incomplete)


def test_helm_runs_get_a_gpu_on_a_gpu_node(values):
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    k8s = launcher["config"]["k8sRunLauncher"]
    assert "image" not in k8s  # runs start in the code location's image (the chart sets DAGSTER_CURRENT_IMAGE)
    assert k8s["resources"]["requests"]["nvidia.com/gpu"] == k8s["resources"]["limits"]["nvidia.com/gpu"] == 1
    pod_spec = k8s["runK8sConfig"]["podSpecConfig"]
    assert pod_spec["node_selector"]
    assert any(toleration["key"] == "nvidia.com/gpu" for toleration in pod_spec["tolerations"])
    # dagster-k8s refuses camelCase keys here when it launches a run.
    assert all(re.fullmatch(r"[a-z_]+", key) for key in pod_spec)
    assert _pod_spec_errors(pod_spec) == []
    assert _pod_spec_errors({**pod_spec, "tolerations": "gpu"})
    assert _pod_spec_errors({**pod_spec, "node_selectors": {}})
    deployment = values["dagster-user-deployments"]["deployments"][0]
    # With includeConfigInLaunchedRuns its settings are merged over the launcher's for run pods.
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    assert not {"resources", "nodeSelector", "tolerations", "affinity"} & set(deployment)


def test_helm_gpu_pool_and_run_handling_match_the_instance(values, scale_out):
    concurrency = values["concurrency"]
    assert concurrency["enabled"] is True
    assert concurrency["pools"]["granularity"] == scale_out["concurrency"]["pools"]["granularity"] == "run"
    assert isinstance(concurrency["pools"]["defaultLimit"], int) and concurrency["pools"]["defaultLimit"] >= 1
    daemon = values["dagsterDaemon"]
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"

    def snake(mapping):
        return {re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower(): value for key, value in mapping.items()}

    assert snake(daemon["runMonitoring"]) == scale_out["run_monitoring"]
    assert snake(daemon["runRetries"]) == scale_out["run_retries"]


def test_helm_code_location_and_storage(values, compose):
    deployment = values["dagster-user-deployments"]["deployments"][0]
    local = _load(REPO / "workspace.yaml")["load_from"][0]["python_module"]
    assert deployment["codeServerArgs"] == ["-m", local["module_name"]]
    assert values["dagsterWebserver"]["workspace"]["servers"] == [
        {"host": deployment["name"], "port": deployment["port"], "name": local["location_name"]}]
    assert {"STORAGE_URL", "INBOX_URL", "AWS_ENDPOINT_URL"} <= set(deployment["env"])
    assert deployment["envSecrets"]  # the S3 keys, never in values
    postgres = values["postgresql"]
    url = compose["services"]["daemon"]["environment"]["DAGSTER_POSTGRES_URL"]
    assert url.startswith(postgres["postgresqlScheme"] + "://")
    assert values["generatePostgresqlPasswordSecret"] is False and "postgresqlPassword" not in postgres
