"""The deployment files agree with the code: Bicep, Docker, compose, systemd, README.

No Bicep compiler installs from the registries this project uses (it ships as a .NET
binary), so ``main.bicep`` goes through pycep (a Bicep grammar in Python) and then the
checks below; each check is shown failing on a broken copy, so none of them is a no-op.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pycep import BicepParser

from playhouse.cli import _parser
from playhouse.config import WorkerSettings, env_names
from playhouse.constants import ALL_QUEUES, CONTAINERS, TABLES
from playhouse.storage import parse_connection_string

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BICEP = DEPLOY / "azure" / "main.bicep"
PARAMETERS = DEPLOY / "azure" / "main.parameters.json"
COMPOSE = DEPLOY / "docker" / "compose.yaml"
UNIT = DEPLOY / "systemd" / "playhouse-worker@.service"
OPS_ROUTES = {"/healthz", "/readyz", "/metrics", "/status"}
BICEP_FUNCTIONS = {"uniqueString", "resourceGroup", "environment", "toLower", "take",
                   "base64", "replace", "loadTextContent", "empty", "concat", "subscription"}
NOT_PLAYHOUSE_ENV = {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PATH", "HF_HOME",
                     "WEBSITES_PORT", "SCM_DO_BUILD_DURING_DEPLOYMENT"}


# ---------------------------------------------------------------- helpers


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def cli_accepts(argv: list[str]) -> bool:
    """The real CLI parser takes ``argv`` (``playhouse ...``) without an error."""
    if not argv or argv[0] != "playhouse":
        return False
    try:
        _parser().parse_args(argv[1:])
    except SystemExit:
        return False
    return True


def unknown_env(names: set[str]) -> set[str]:
    return {n for n in names if n not in env_names() and n not in NOT_PLAYHOUSE_ENV}


# ---------------------------------------------------------------- Bicep


def bicep_problems(text: str, parameters: dict[str, Any]) -> list[str]:
    """Everything wrong with the template, as readable lines (empty when it is right)."""
    try:
        doc = BicepParser(cache=False).parse(text=text)
    except Exception as exc:  # pycep raises ValueError or lark's errors
        return [f"does not parse: {str(exc)[:200]}"]
    problems: list[str] = []
    params, variables = doc["parameters"], doc["variables"]
    resources, outputs = doc["resources"], doc["outputs"]
    symbols = set(params) | set(variables) | set(resources)

    def names(var: str) -> set[str]:
        value = variables.get(var, {}).get("value")
        return set(value) if isinstance(value, list) else set()

    for var, wanted in (("queueNames", ALL_QUEUES), ("tableNames", TABLES),
                        ("containerNames", CONTAINERS)):
        if names(var) != set(wanted):
            problems.append(f"{var} differs from constants.py: missing "
                            f"{sorted(set(wanted) - names(var))}, extra "
                            f"{sorted(names(var) - set(wanted))}")
    types = {r["type"]: name for name, r in resources.items()}
    for kind in ("Microsoft.Storage/storageAccounts",
                 "Microsoft.Storage/storageAccounts/queueServices/queues",
                 "Microsoft.Storage/storageAccounts/tableServices/tables",
                 "Microsoft.Storage/storageAccounts/blobServices/containers",
                 "Microsoft.Web/serverfarms", "Microsoft.Web/sites", "Microsoft.Cache/redis",
                 "Microsoft.Compute/virtualMachines"):
        if kind not in types:
            problems.append(f"no {kind} resource")
    for kind, var in (("queues", "queueNames"), ("tables", "tableNames"),
                      ("containers", "containerNames")):
        loop = resources.get(kind, {}).get("config", {}).get("loop_type", {})
        if loop.get("detail", {}).get("array_name") != var:
            problems.append(f"resource {kind} is not one per item of {var}")
    for optional, flag in (("redis", "enableRedis"), ("workerVm", "enableGpuWorker")):
        if resources.get(optional, {}).get("config", {}).get("condition") != flag:
            problems.append(f"{optional} is not conditional on {flag}")
    for name, resource in resources.items():
        config = resource["config"].get("config", resource["config"])
        parent = config.get("parent")
        if parent is not None and parent not in resources:
            problems.append(f"{name}: parent {parent!r} is not a resource")
    for node in walk(doc):
        if isinstance(node, str):
            for ref in re.findall(r"\$\{\s*([A-Za-z_]\w*)", node):
                if ref not in symbols and ref not in BICEP_FUNCTIONS:
                    problems.append(f"${{{ref}}} names nothing declared")
        if isinstance(node, dict) and node.get("type") == "load_text_content":
            path = node["parameters"]["file_path"]
            if not (BICEP.parent / path).is_file():
                problems.append(f"loadTextContent({path!r}): no such file")
    site = resources.get("web", {}).get("config", {}).get("properties", {}).get("siteConfig", {})
    if site.get("webSocketsEnabled") is not True:
        problems.append("the web app has websockets off")
    if site.get("healthCheckPath") not in OPS_ROUTES:
        problems.append(f"healthCheckPath {site.get('healthCheckPath')!r} is not a route")
    settings = {s["name"]: s["value"] for s in variables.get("baseSettings", {}).get("value", [])}
    settings |= {s["name"]: s["value"] for s in walk(variables.get("redisSettings", {}))
                 if isinstance(s, dict) and "name" in s and "value" in s}
    if unread := unknown_env(set(settings)):
        problems.append(f"app settings playhouse does not read: {sorted(unread)}")
    for needed in ("PLAYHOUSE_STORAGE", "PLAYHOUSE_WEB_SECRET_KEY", "PLAYHOUSE_REDIS_URL"):
        if needed not in settings:
            problems.append(f"app setting {needed} missing")
    if settings.get("PLAYHOUSE_WEB_PORT") != settings.get("WEBSITES_PORT"):
        problems.append("PLAYHOUSE_WEB_PORT and WEBSITES_PORT differ")
    for out in ("storageConnectionString", "webUrl", "redisUrl", "storageAccountName"):
        if out not in outputs:
            problems.append(f"output {out} missing")
    given = parameters.get("parameters", {})
    for name, value in given.items():
        if name not in params:
            problems.append(f"parameters file sets undeclared {name}")
        elif not isinstance(value.get("value"), {"bool": bool, "int": int,
                                                 "string": str}[params[name]["type"]]):
            problems.append(f"parameters file: {name} is not a {params[name]['type']}")
    for name, param in params.items():
        secure = any(d["type"] == "secure" for d in param["decorators"])
        if param["default"] is None and not secure and name not in given:
            problems.append(f"required parameter {name} is not in the parameters file")
    return problems


def test_bicep_provisions_what_the_code_names() -> None:
    assert bicep_problems(BICEP.read_text(), json.loads(PARAMETERS.read_text())) == []


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("  'gen-image-poison'\n", "", "queueNames differs from constants.py"),
    ("  'decisions'\n]", "]", "tableNames differs"),
    ("webSocketsEnabled: true", "webSocketsEnabled: false", "websockets off"),
    ("parent: tableService", "parent: tableServize", "parent 'tableServize'"),
    ("AccountName=${storage.name}", "AccountName=${storaje.name}", "${storaje} names nothing"),
    ("name: 'PLAYHOUSE_WEB_ADMINS'", "name: 'PLAYHOUSE_WEB_ADMIN'", "PLAYHOUSE_WEB_ADMIN'"),
    ("gpu-worker.cloud-init.yaml", "gpu-worker.yaml", "no such file"),
    ("resource redis 'Microsoft.Cache/redis@2024-03-01' = if (enableRedis) {",
     "resource redis 'Microsoft.Cache/redis@2024-03-01' = {", "redis is not conditional"),
    ("output webUrl string", "output webAddress string", "output webUrl missing"),
    ("param webSku string = 'B1'", "param webSku string = 'B1' {", "does not parse"),
])
def test_bicep_check_catches_a_broken_template(old: str, new: str, expected: str) -> None:
    text = BICEP.read_text()
    assert old in text
    problems = bicep_problems(text.replace(old, new, 1), json.loads(PARAMETERS.read_text()))
    assert any(expected in p for p in problems), problems


def test_bicep_parameters_file_is_checked() -> None:
    params = json.loads(PARAMETERS.read_text())
    params["parameters"]["enableRedis"] = {"value": "yes"}
    params["parameters"]["colour"] = {"value": "red"}
    problems = bicep_problems(BICEP.read_text(), params)
    assert "parameters file: enableRedis is not a bool" in problems
    assert "parameters file sets undeclared colour" in problems


def test_cloud_init_placeholders_are_all_filled() -> None:
    text = (DEPLOY / "azure" / "gpu-worker.cloud-init.yaml").read_text()
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert {f["path"] for f in doc["write_files"]} == {
        "/etc/systemd/system/playhouse-worker@.service", "/etc/playhouse/worker.env"}
    bicep = BICEP.read_text()
    for placeholder in set(re.findall(r"__[A-Z0-9_]+__", text)):
        assert f"'{placeholder}'" in bicep, placeholder
    assert any("enable --now playhouse-worker@text" in c for c in doc["runcmd"])


# ---------------------------------------------------------------- Docker


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, f"{path}: dangling continuation"
    return out


def final_stage(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last:]


def env_of(steps: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for op, args in steps:
        if op == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def check_image(path: Path, *, base: str, command: list[str]) -> None:
    steps = dockerfile(path)
    ops = [op for op, _ in steps]
    assert set(ops) <= {"FROM", "ARG", "ENV", "RUN", "COPY", "WORKDIR", "USER", "EXPOSE",
                        "HEALTHCHECK", "CMD", "VOLUME", "STOPSIGNAL"}, ops
    stage = final_stage(steps)
    assert stage[0][1].startswith(base), stage[0]
    users = [args for op, args in stage if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert ops.index("USER", ops.index(stage[0][0])) < ops.index("CMD")
    (cmd,) = [json.loads(args) for op, args in steps if op == "CMD"]
    assert cmd == command and cli_accepts(cmd)
    assert unknown_env(set(env_of(steps))) == set()
    for op, args in steps:
        if op == "COPY" and "--from=" not in args:
            *sources, _ = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"{path.name}: COPY {source}: not in the repo"


def test_web_dockerfile_is_slim_non_root_and_runs_playhouse_web() -> None:
    path = DEPLOY / "docker" / "Dockerfile.web"
    check_image(path, base="python:3.11-slim", command=["playhouse", "web"])
    steps = dockerfile(path)
    env = env_of(steps)
    assert [args for op, args in steps if op == "EXPOSE"] == [env["PLAYHOUSE_WEB_PORT"]]
    assert env["PLAYHOUSE_WEB_HOST"] == "0.0.0.0"
    (health,) = [args for op, args in steps if op == "HEALTHCHECK"]
    assert f"127.0.0.1:{env['PLAYHOUSE_WEB_PORT']}/healthz" in health
    assert not any("torch" in args or "[worker]" in args for _, args in steps)  # slim


def test_worker_dockerfile_has_cuda_and_the_pinned_torch() -> None:
    path = DEPLOY / "docker" / "Dockerfile.worker"
    check_image(path, base="nvidia/cuda:", command=["playhouse", "worker", "--kind", "text"])
    steps = dockerfile(path)
    assert ("STOPSIGNAL", "SIGTERM") in steps
    pin = re.search(r'"(torch==[^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert pin is not None and pin.group(1) in path.read_text()
    assert "'.[worker]'" in path.read_text()


def seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", text)
    assert match, text
    return int(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def test_compose_runs_azurite_web_and_workers_consistently() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    assert set(services) == {"azurite", "web", "worker-text", "worker-image"}
    azurite_cmd = services["azurite"]["command"]
    azurite_ports = {azurite_cmd[i + 1] for i, a in enumerate(azurite_cmd) if a.endswith("Port")}
    kinds = set()
    for name in ("web", "worker-text", "worker-image"):
        service = services[name]
        build = service["build"]
        assert (COMPOSE.parent / build["context"] / build["dockerfile"]).is_file(), name
        assert cli_accepts(service["command"]), service["command"]
        env = service["environment"]
        assert unknown_env(set(env)) == set(), name
        parts = parse_connection_string(env["PLAYHOUSE_STORAGE"])
        for key in ("BlobEndpoint", "QueueEndpoint", "TableEndpoint"):
            host, port = re.match(r"http://([^:/]+):(\d+)/", parts[key]).groups()  # type: ignore[union-attr]
            assert host == "azurite" and port in azurite_ports, (name, key)
        assert "azurite" in service["depends_on"]
        if name.startswith("worker"):
            kinds.add(service["command"][service["command"].index("--kind") + 1])
            assert service["stop_signal"] == "SIGTERM"
            assert seconds(service["stop_grace_period"]) >= WorkerSettings().visibility_timeout_s
            assert service["build"]["dockerfile"].endswith("Dockerfile.worker")
    assert kinds == {"text", "image"}
    web = services["web"]
    assert web["command"] == ["playhouse", "web"]
    port = web["environment"]["PLAYHOUSE_WEB_PORT"]
    assert [p.split(":")[-1] for p in web["ports"]] == [port]
    probe = " ".join(web["healthcheck"]["test"])
    assert re.search(rf"127\.0\.0\.1:{port}(/\w+)", probe).group(1) in OPS_ROUTES  # type: ignore[union-attr]


def test_make_images_fails_clearly_without_docker(tmp_path: Path) -> None:
    missing = tmp_path / "no-docker"
    run = subprocess.run(["make", "--no-print-directory", "images", f"DOCKER={missing}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "Docker is not available here" in run.stderr


# ---------------------------------------------------------------- systemd


def unit_settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_worker_unit_restarts_stops_gracefully_and_reads_an_env_file() -> None:
    unit = unit_settings(UNIT.read_text())
    assert unit["Restart"] == ["on-failure"]
    assert unit["KillSignal"] == ["SIGTERM"]
    assert int(unit["TimeoutStopSec"][0]) >= WorkerSettings().visibility_timeout_s
    (env_file,) = unit["EnvironmentFile"]
    assert env_file == "/etc/playhouse/worker.env"
    (exec_start,) = unit["ExecStart"]
    for kind in ("text", "image"):
        argv = shlex.split(exec_start.replace("%i", kind))
        assert cli_accepts(["playhouse", *argv[1:]]), argv
    env = {pair.split("=", 1)[0] for v in unit.get("Environment", []) for pair in shlex.split(v)}
    assert unknown_env(env) == set()
    example = (DEPLOY / "systemd" / "worker.env.example").read_text()
    keys = {line.split("=", 1)[0] for line in example.splitlines()
            if line and not line.startswith("#")}
    assert "PLAYHOUSE_STORAGE" in keys and unknown_env(keys) == set()


def verify_unit(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` on an instance of the unit, its program made to exist."""
    stub = tmp_path / "playhouse"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    program = "/opt/playhouse/.venv/bin/playhouse"
    assert text.count(program) == 1
    target = tmp_path / "playhouse-worker@text.service"
    target.write_text(text.replace(program, str(stub)))
    return subprocess.run(["systemd-analyze", "verify", "--man=no", str(target)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"})


def test_worker_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    run = verify_unit(UNIT.read_text(), tmp_path)
    assert run.returncode == 0 and run.stderr.strip() == "", run.stderr


def test_systemd_analyze_catches_a_broken_unit(tmp_path: Path) -> None:
    run = verify_unit(UNIT.read_text().replace("Restart=on-failure", "Restart=sometimes"),
                      tmp_path)
    assert "Restart" in run.stderr or "restart" in run.stderr


# ---------------------------------------------------------------- README


def test_readme_diagram_names_real_queues_tables_and_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    (diagram,) = re.findall(r"```mermaid\n(.*?)```", readme, re.S)
    queues = set(re.findall(r"\[\[([\w-]+)\]\]", diagram))
    assert queues and queues <= set(ALL_QUEUES)
    assert set(ALL_QUEUES) - {q for q in ALL_QUEUES if q.endswith("-poison")} <= queues
    for table in re.findall(r"\(\[?Table: ([\w, ]+)\]?\)", diagram):
        assert {t.strip() for t in table.split(",")} <= set(TABLES), table
    commands = re.findall(r"\[(playhouse [^\]]+)\]", diagram)
    assert commands and all(cli_accepts(shlex.split(c)) for c in commands), commands
    assert "/metrics" in diagram and "heartbeat" in diagram
    assert "## Deploy" in readme
