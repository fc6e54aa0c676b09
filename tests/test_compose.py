"""The deployment files agree with the settings the app reads, and keep the stack private.

compose.yaml (one machine), compose.cluster.yaml (past one machine) and the overrides
compose.gpu.yaml and compose.apikey.yaml are read as YAML and checked against
`rag.settings.Settings`: every variable the kb containers get is a real setting with a valid
value, every URL names a service of the same file on a port that service exposes, and so on.
compose.yaml needs no variable at all (a clean clone's `docker compose up`) and runs Qdrant
without an API key; compose.apikey.yaml and compose.cluster.yaml require the key and give the
same one to Qdrant and to every service that talks to it. When Debian's `docker-compose` is on
PATH the files are also validated by it (`config -q`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from rag.settings import UPSTREAM_NAMES, Settings, env_name

ROOT = Path(__file__).resolve().parents[1]
STACKS = ("compose.yaml", "compose.cluster.yaml")
OVERRIDES = ("compose.gpu.yaml", "compose.apikey.yaml")
# The file sets that run Qdrant with an API key, and every set the kb services run under.
KEYED = (("compose.cluster.yaml",), ("compose.yaml", "compose.apikey.yaml"))
FILE_SETS = (("compose.yaml",), *KEYED)
TEST_ENV = {"QDRANT_API_KEY": "test-key"}  # the one variable without a default (keyed sets)
BIND = "${KB_BIND:-127.0.0.1}"

# Which image serves the thing a URL setting points at, and on which container port.
URL_TARGETS = {
    "QDRANT_URL": ("qdrant/qdrant", 6333),
    "OLLAMA_HOST": ("ollama/ollama", 11434),
    "KB_OLLAMA_HOSTS": ("ollama/ollama", 11434),
}
SETTING_ENV = {env_name(field): field for field in Settings.model_fields}

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


class MissingVariableError(LookupError):
    pass


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?err}`, `$$`."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        value = env.get(name)
        if op == ":-":
            return value or arg
        if op == "-":
            return arg if value is None else value
        if op in (":?", "?") and (value is None or (op == ":?" and value == "")):
            raise MissingVariableError(f"{name}: {arg}")
        return value or ""

    parts = text.split("$$")
    return "$".join(_VAR.sub(one, part) for part in parts)


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    return node


def variables(node: Any) -> Iterator[tuple[str, str | None, str]]:
    """(name, operator, argument) of every `${...}` in a YAML tree."""
    if isinstance(node, str):
        for part in node.split("$$"):
            for match in _VAR.finditer(part):
                yield match.group(1), match.group(2), match.group(3) or ""
    elif isinstance(node, list):
        for item in node:
            yield from variables(item)
    elif isinstance(node, dict):
        for value in node.values():
            yield from variables(value)


def load_raw(name: str) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict), name
    return data


def load(name: str, env: Mapping[str, str] = TEST_ENV) -> dict[str, Any]:
    return resolve(load_raw(name), env)


def merge(base: Any, override: Any) -> Any:
    """Compose's merge of an override into a file, for mappings (all these overrides set)."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value) if key in base else value
        return merged
    return override


def load_set_raw(files: tuple[str, ...]) -> dict[str, Any]:
    """`docker compose -f files[0] -f files[1] ...`, variables not yet replaced."""
    merged: dict[str, Any] = {}
    for name in files:
        merged = merge(merged, load_raw(name))
    return merged


def load_set(files: tuple[str, ...], env: Mapping[str, str] = TEST_ENV) -> dict[str, Any]:
    return resolve(load_set_raw(files), env)


def set_id(files: tuple[str, ...]) -> str:
    return "+".join(files)


def qdrant_clients(services: dict[str, Any]) -> set[str]:
    """The services that talk to Qdrant: those given a QDRANT_URL."""
    return {name for name, s in services.items() if "QDRANT_URL" in environment(s)}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def image_repo(service: dict[str, Any]) -> str:
    return str(service.get("image", "")).rsplit(":", 1)[0]


def is_kb_service(service: dict[str, Any]) -> bool:
    """Runs the project's own image (built from the Dockerfile), so it reads Settings."""
    return "build" in service


def is_one_shot(service: dict[str, Any]) -> bool:
    return str(service.get("restart", "no")) == "no"


def container_ports(service: dict[str, Any]) -> set[int]:
    ports = {int(str(p).split("/")[0]) for p in service.get("expose", [])}
    for entry in service.get("ports", []):
        target = entry["target"] if isinstance(entry, dict) else str(entry).rsplit(":", 1)[-1]
        ports.add(int(str(target).split("/")[0]))
    return ports


def volume_mounts(service: dict[str, Any]) -> Iterator[tuple[str, bool]]:
    """(source, read_only) of every volume of a service."""
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            yield str(entry.get("source", "")), bool(entry.get("read_only", False))
        else:
            parts = str(entry).split(":")
            yield parts[0], len(parts) > 2 and "ro" in parts[2].split(",")


def _env_example_text() -> str:
    return (ROOT / ".env.example").read_text(encoding="utf-8")


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in _env_example_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


@pytest.fixture
def clean_settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings built from nothing but what the test passes (no KB_* of the shell, no kb.toml)."""
    for name in list(os.environ):
        if name.startswith("KB_") or name in UPSTREAM_NAMES.values():
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


# -- the app's environment is the app's settings --


@pytest.mark.parametrize("files", FILE_SETS, ids=set_id)
def test_kb_services_set_only_real_settings(
    files: tuple[str, ...], clean_settings_env: None
) -> None:
    stack = set_id(files)
    services = load_set(files)["services"]
    kb_services = {name: s for name, s in services.items() if is_kb_service(s)}
    assert {"app", "ingest"} <= set(kb_services)
    for name, service in kb_services.items():
        env = environment(service)
        unknown = sorted(set(env) - set(SETTING_ENV))
        assert not unknown, f"{stack}: {name} sets {unknown}, which no Settings field reads"
        for upstream in ("QDRANT_URL", "OLLAMA_HOST"):
            assert upstream in env, f"{stack}: {name} must set {upstream}"
        # The values the stack gives by default are valid settings.
        settings = Settings(**{SETTING_ENV[key]: value for key, value in env.items()})
        assert settings.uses_server
        if files in KEYED:
            assert settings.qdrant_api_key is not None, f"{stack}: {name} gets no key"
            assert settings.qdrant_api_key.get_secret_value() == TEST_ENV["QDRANT_API_KEY"]
        else:  # Qdrant runs without a key: the app must not send one
            assert settings.qdrant_api_key is None, f"{stack}: {name} gets a key"
        assert settings.model in settings.models


@pytest.mark.parametrize("stack", STACKS)
def test_app_gets_models_and_password_from_the_environment(stack: str) -> None:
    raw_env = environment(load_raw(stack)["services"]["app"])
    assert raw_env["KB_MODELS"].startswith("${KB_MODELS")
    assert raw_env["KB_APP_PASSWORD"].startswith("${KB_APP_PASSWORD")
    resolved = environment(load(stack, {**TEST_ENV, "KB_APP_PASSWORD": "pw"})["services"]["app"])
    assert resolved["KB_APP_PASSWORD"] == "pw"


def test_compose_defaults_match_settings_defaults() -> None:
    app = environment(load("compose.yaml")["services"]["app"])
    defaults = Settings.model_construct()  # field defaults only, no environment read
    assert app["KB_MODELS"].split(",") == defaults.models
    assert app["KB_MODEL"] == defaults.model
    assert app["KB_COLLECTION"] == defaults.collection


@pytest.mark.parametrize("stack", STACKS)
def test_service_urls_use_service_names_and_exposed_ports(stack: str) -> None:
    services = load(stack)["services"]
    checked = 0
    for name, service in services.items():
        for key, value in environment(service).items():
            if key not in URL_TARGETS:
                continue
            repo, port = URL_TARGETS[key]
            for url in filter(None, (u.strip() for u in value.split(","))):
                parts = urlsplit(url)
                assert parts.scheme == "http", f"{stack}: {name} {key}={url}"
                assert parts.hostname in services, f"{stack}: {name} {key}={url}: no such service"
                target = services[parts.hostname]
                assert image_repo(target) == repo, f"{stack}: {name} {key}={url} is not {repo}"
                assert parts.port == port, f"{stack}: {name} {key}={url}: {repo} serves {port}"
                assert port in container_ports(target), f"{stack}: {parts.hostname} hides {port}"
                checked += 1
    assert checked >= 5


# -- privacy and robustness of the stack --


@pytest.mark.parametrize("stack", [*STACKS, *OVERRIDES])
def test_published_ports_bind_to_kb_bind(stack: str) -> None:
    for name, service in load_raw(stack)["services"].items():
        for entry in service.get("ports", []):
            if isinstance(entry, dict):
                assert entry.get("host_ip") == BIND, f"{stack}: {name} publishes {entry}"
            else:
                assert str(entry).startswith(BIND + ":"), f"{stack}: {name} publishes {entry}"
    resolved = load(stack)["services"]
    published = [p for s in resolved.values() for p in s.get("ports", [])]
    assert all(str(p).startswith("127.0.0.1:") for p in published)
    if stack == "compose.yaml":
        assert "127.0.0.1:8501:8501" in published


@pytest.mark.parametrize("stack", STACKS)
def test_volumes_are_named(stack: str) -> None:
    data = load(stack)
    declared = set(data.get("volumes") or {})
    used: set[str] = set()
    for name, service in data["services"].items():
        for source, read_only in volume_mounts(service):
            if source.startswith((".", "/", "~")):
                # The only bind mount: the documents, read-only, handed to the one-shot ingest
                # and to the app (which opens a passage's source at the path ingest stored).
                assert read_only and (service.get("profiles") or name == "app"), (
                    f"{stack}: {name} mounts {source}"
                )
                continue
            assert source in declared, f"{stack}: {name} uses undeclared volume {source}"
            used.add(source)
    assert used == declared, f"{stack}: unused volumes {sorted(declared - used)}"
    storage = {
        image_repo(s): {t for e in s.get("volumes", []) for t in [str(e).split(":")[1]]}
        for s in data["services"].values()
        if not is_kb_service(s) and not is_one_shot(s)
    }
    assert "/qdrant/storage" in storage["qdrant/qdrant"]
    assert "/root/.ollama" in storage["ollama/ollama"]


@pytest.mark.parametrize("files", FILE_SETS, ids=set_id)
def test_long_running_services_have_healthchecks(files: tuple[str, ...]) -> None:
    stack = set_id(files)
    services = load_set(files)["services"]
    for name, service in services.items():
        if is_one_shot(service):
            continue
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{stack}: {name} has no check"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), f"{stack}: {name}"
    qdrant = [s for s in services.values() if image_repo(s) == "qdrant/qdrant"]
    assert qdrant
    for service in qdrant:  # the image has no curl: the check must not need it
        command = " ".join(service["healthcheck"]["test"])
        assert "curl" not in command and "wget" not in command
        assert "/dev/tcp/127.0.0.1/6333" in command and "/readyz" in command
        # /readyz answers without the API key: the same check works with the key on or off.
        assert "api-key" not in command.lower() and "QDRANT_API_KEY" not in command


@pytest.mark.parametrize("stack", STACKS)
def test_app_depends_on_healthy_services(stack: str) -> None:
    services = load(stack)["services"]
    app = services["app"]
    deps = depends_on(app)
    for dep, condition in deps.items():
        target = services[dep]
        wanted = "service_completed_successfully" if is_one_shot(target) else "service_healthy"
        assert condition == wanted, f"{stack}: app waits for {dep} with {condition}"
    pointed_at = {
        urlsplit(url.strip()).hostname
        for key, value in environment(app).items()
        if key in URL_TARGETS
        for url in value.split(",")
    }
    assert pointed_at <= set(deps), f"{stack}: app does not wait for {pointed_at - set(deps)}"
    pullers = [n for n, s in services.items() if is_one_shot(s) and not s.get("profiles")]
    assert pullers and all(deps.get(n) == "service_completed_successfully" for n in pullers)


@pytest.mark.parametrize("stack", STACKS)
def test_models_are_pulled_once_on_every_ollama_host(stack: str) -> None:
    services = load(stack)["services"]
    pull = services["ollama-pull"]
    assert image_repo(pull) == "ollama/ollama"
    env = environment(pull)
    assert env["KB_MODELS"] == environment(services["app"])["KB_MODELS"]
    hosts = env.get("KB_OLLAMA_HOSTS") or env["OLLAMA_HOST"]
    ollama_services = {n for n, s in services.items() if image_repo(s) == "ollama/ollama"} - {
        "ollama-pull"
    }
    assert {urlsplit(h).hostname for h in hosts.split(",")} == ollama_services
    assert set(depends_on(pull)) == ollama_services
    assert set(depends_on(pull).values()) == {"service_healthy"}
    script = " ".join(pull["command"])
    assert "ollama pull" in script and "KB_MODELS" in script


@pytest.mark.parametrize("files", FILE_SETS, ids=set_id)
def test_telemetry_off(files: tuple[str, ...]) -> None:
    services = load_set(files)["services"]
    qdrant = [n for n, s in services.items() if image_repo(s) == "qdrant/qdrant"]
    assert qdrant
    for name in qdrant:
        assert environment(services[name])["QDRANT__TELEMETRY_DISABLED"] == "true"


def test_compose_yaml_needs_no_variable_and_runs_qdrant_without_a_key() -> None:
    """A clean clone's `docker compose up` needs no .env: every variable has a default."""
    raw = load_raw("compose.yaml")
    required = sorted({name for name, op, _ in variables(raw) if op not in (":-", "-")})
    assert not required, f"compose.yaml needs {required} set"
    services = load("compose.yaml", {})["services"]  # no variable set at all
    for name, service in services.items():
        env = environment(service)
        # Qdrant takes QDRANT__SERVICE__API_KEY="" as an empty key, not as no key.
        assert "QDRANT__SERVICE__API_KEY" not in env, f"compose.yaml: {name} sets a Qdrant key"
        assert "QDRANT_API_KEY" not in env, f"compose.yaml: {name} sends a Qdrant key"
    assert qdrant_clients(services) >= {"app", "ingest"}


@pytest.mark.parametrize("files", KEYED, ids=set_id)
def test_keyed_sets_give_one_key_to_qdrant_and_its_clients(files: tuple[str, ...]) -> None:
    stack = set_id(files)
    # compose refuses to start without a key (unset or empty) rather than run Qdrant open.
    for env in ({}, {"QDRANT_API_KEY": ""}):
        with pytest.raises(MissingVariableError, match="QDRANT_API_KEY"):
            load_set(files, env)
    services = load_set(files)["services"]
    qdrant = [n for n, s in services.items() if image_repo(s) == "qdrant/qdrant"]
    assert qdrant
    # Each of them is required on its own: none takes a default (an empty key is still a key).
    raw = load_set_raw(files)["services"]
    for name in [*qdrant, *qdrant_clients(services)]:
        values = [v for k, v in environment(raw[name]).items() if "API_KEY" in k]
        assert values, f"{stack}: {name} gets no key"
        for value in values:
            assert value.startswith("${QDRANT_API_KEY:?"), f"{stack}: {name} key {value}"
    key = TEST_ENV["QDRANT_API_KEY"]
    for name in qdrant:
        assert environment(services[name]).get("QDRANT__SERVICE__API_KEY") == key, (stack, name)
    clients = qdrant_clients(services)
    assert clients >= {"app", "ingest"}
    for name in clients:
        assert environment(services[name]).get("QDRANT_API_KEY") == key, f"{stack}: {name}"


def test_apikey_override_adds_only_the_key() -> None:
    """compose.apikey.yaml changes nothing of compose.yaml but the key (ports, checks, ...)."""
    override = load("compose.apikey.yaml")["services"]
    base = load("compose.yaml")["services"]
    qdrant = {n for n, s in base.items() if image_repo(s) == "qdrant/qdrant"}
    assert set(override) == qdrant | qdrant_clients(base)
    for name, service in override.items():
        assert set(service) == {"environment"}, f"compose.apikey.yaml: {name} sets {set(service)}"
        wanted = {"QDRANT__SERVICE__API_KEY"} if name in qdrant else {"QDRANT_API_KEY"}
        assert set(environment(service)) == wanted, f"compose.apikey.yaml: {name}"


@pytest.mark.parametrize("stack", [*STACKS, *OVERRIDES])
def test_images_are_pinned(stack: str) -> None:
    for name, service in load(stack)["services"].items():
        if "image" not in service:
            assert "build" in service or stack in OVERRIDES, f"{stack}: {name} has no image"
            continue
        image = str(service["image"])
        tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
        assert tag and tag != "latest", f"{stack}: {name} image {service['image']} is not pinned"
        if not is_kb_service(service):
            assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{stack}: {name} tag {tag}"


def test_every_stack_pins_the_same_versions() -> None:
    pins: dict[str, set[str]] = {}
    for stack in STACKS:
        for service in load(stack)["services"].values():
            if "image" in service and not is_kb_service(service):
                repo, _, tag = str(service["image"]).partition(":")
                pins.setdefault(repo, set()).add(tag)
    assert set(pins) == {"qdrant/qdrant", "ollama/ollama", "vllm/vllm-openai"}
    assert all(len(tags) == 1 for tags in pins.values()), pins


def test_the_vllm_profile_serves_an_openai_compatible_model_on_gpus() -> None:
    services = load("compose.yaml")["services"]
    vllm = services["vllm"]
    assert vllm["profiles"] == ["vllm"]  # only with --profile vllm: most hosts have no GPU
    env = environment(vllm)
    assert env["VLLM_NO_USAGE_STATS"] == "1" and env["DO_NOT_TRACK"] == "1"
    flags = dict(arg.removeprefix("--").partition("=")[::2] for arg in vllm["command"])
    assert flags["max-model-len"] == "8192"  # the window kb reads from /v1/models
    assert flags["tensor-parallel-size"] == "1" and flags["served-model-name"]
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert vllm["ports"] == ["127.0.0.1:8000:8000"]
    # The app reaches it once KB_OPENAI_SERVERS names it; by default Ollama only.
    app = Settings(openai_servers=environment(services["app"])["KB_OPENAI_SERVERS"])
    assert app.all_openai_servers == []
    named = Settings(openai_servers='[{"name": "vllm", "url": "http://vllm:8000/v1"}]')
    assert [s.url for s in named.all_openai_servers] == ["http://vllm:8000/v1"]


def test_env_example_lists_every_variable_with_its_default() -> None:
    example = env_example()
    used: dict[str, set[str]] = {}
    for stack in (*STACKS, *OVERRIDES):
        for name, op, arg in variables(load_raw(stack)):
            used.setdefault(name, set())
            if op in (":-", "-"):
                used[name].add(arg)
    missing = sorted(set(used) - set(example))
    assert not missing, f".env.example lacks {missing}"
    stale = sorted(set(example) - set(used))
    assert not stale, f".env.example lists {stale}, which no compose file uses"
    for name, defaults in used.items():
        assert len(defaults) <= 1, f"{name} has different defaults: {defaults}"
        if defaults:
            assert example[name] == next(iter(defaults)), f".env.example {name}"
    assert example["QDRANT_API_KEY"] == "", ".env.example must not ship a Qdrant key"
    # The commented COMPOSE_FILE line turns the key on with plain `docker compose`.
    text = _env_example_text()
    compose_file = re.findall(r"^# COMPOSE_FILE=(\S+)$", text, re.M)
    assert compose_file == ["compose.yaml:compose.apikey.yaml"], compose_file
    for name in example:  # each variable is explained by the comment right above it
        assert re.search(rf"#[^\n]*\n{name}=", text), f".env.example: {name} has no comment"


# -- past one machine --


def test_cluster_runs_three_qdrant_peers_and_two_ollama_hosts() -> None:
    services = load("compose.cluster.yaml")["services"]
    peers = {n: s for n, s in services.items() if image_repo(s) == "qdrant/qdrant"}
    assert len(peers) == 3
    bootstrap_targets = set()
    starters = []
    for name, service in peers.items():
        env = environment(service)
        assert env["QDRANT__CLUSTER__ENABLED"] == "true"
        assert env["QDRANT__CLUSTER__P2P__PORT"] == "6335"
        assert 6335 in container_ports(service)
        command = list(service["command"])
        assert command[command.index("--uri") + 1] == f"http://{name}:6335"
        if "--bootstrap" in command:
            bootstrap_targets.add(command[command.index("--bootstrap") + 1])
            assert set(depends_on(service).values()) == {"service_healthy"}
        else:
            starters.append(name)
    assert len(starters) == 1, "exactly one peer starts the cluster"
    assert bootstrap_targets == {f"http://{starters[0]}:6335"}
    app_env = environment(services["app"])
    hosts = app_env["KB_OLLAMA_HOSTS"].split(",")
    assert hosts == ["http://ollama-1:11434", "http://ollama-2:11434"]
    assert Settings(ollama_hosts=app_env["KB_OLLAMA_HOSTS"]).all_ollama_hosts == hosts


def test_gpu_override_reserves_nvidia_gpus_for_ollama_only() -> None:
    override = load("compose.gpu.yaml")["services"]
    assert set(override) == {"ollama"}
    assert "ollama" in load("compose.yaml")["services"]
    devices = override["ollama"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]


# -- the image --


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            rows.append((keyword.upper(), " ".join(rest.split())))
    return rows


def test_dockerfile_is_offline_non_root_and_cpu_only() -> None:
    rows = dockerfile_instructions()
    assert rows[0] == ("FROM", "python:3.11-slim")
    runs = [rest for keyword, rest in rows if keyword == "RUN"]
    torch_at = next(i for i, r in enumerate(runs) if "pip install torch==" in r)
    project_at = next(i for i, r in enumerate(runs) if re.search(r"pip install \.(\s|$)", r))
    assert torch_at < project_at, "CPU torch must be installed before the project"
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs[torch_at]
    env = " ".join(rest for keyword, rest in rows if keyword == "ENV")
    for switch in (
        "HF_HUB_OFFLINE=1",
        "TRANSFORMERS_OFFLINE=1",
        "HF_HUB_DISABLE_TELEMETRY=1",
        "DO_NOT_TRACK=1",
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS=false",
    ):
        assert switch in env.split(), switch
    users = [rest for keyword, rest in rows if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    user_at = rows.index(("USER", users[-1]))
    warm = [i for i, (k, r) in enumerate(rows) if k == "RUN" and "Embedder(" in r]
    assert warm and warm[0] > user_at, "warm the embedder as the user the app runs as"
    assert any(k == "HEALTHCHECK" and "/_stcore/health" in r for k, r in rows)
    assert rows[-1] == (
        "CMD",
        '["streamlit", "run", "ui/app.py", "--server.port=8501", "--server.address=0.0.0.0"]',
    )


def test_dockerignore_keeps_data_and_secrets_out() -> None:
    lines = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for pattern in ("data/", ".git", ".venv/", "venv/", ".env", "**/__pycache__/"):
        assert pattern in lines, pattern
    # the image needs .streamlit/config.toml; only the secrets stay out
    assert not any(line.startswith(".streamlit") for line in lines - {".streamlit/secrets.toml"})
    assert ".streamlit/secrets.toml" in lines


def test_streamlit_config_is_private_and_matches_settings() -> None:
    text = (ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8")
    config = tomllib.loads(text)
    assert config["browser"]["gatherUsageStats"] is False
    assert config["server"]["headless"] is True
    # above the app's own limit, so that a file over that limit reaches the app to be named
    assert config["server"]["maxUploadSize"] > Settings.model_construct().upload_max_mb
    assert config["client"]["toolbarMode"] == "minimal"
    # no full garbage collection between an answer and the next question's script run
    assert config["runner"]["postScriptGC"] is False
    assert not re.search(r"https?://", text), "nothing in the config may point at a remote site"


# -- docker-compose's own validation --

DOCKER_COMPOSE = shutil.which("docker-compose")
needs_docker_compose = pytest.mark.skipif(
    DOCKER_COMPOSE is None, reason="docker-compose is not installed"
)


def _compose(
    files: tuple[str, ...],
    env: Mapping[str, str],
    tmp_path: Path,
    *command: str,
    env_file_text: str = "",
) -> subprocess.CompletedProcess[str]:
    """docker-compose with the given files, an env file with `env_file_text` (empty by default:
    not a developer's .env), and none of the shell's KB_/QDRANT_/OLLAMA_/COMPOSE_ variables."""
    env_file = tmp_path / "test.env"
    env_file.write_text(env_file_text, encoding="utf-8")
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KB_", "QDRANT_", "OLLAMA_", "COMPOSE_"))
    }
    args = [str(DOCKER_COMPOSE), "--env-file", str(env_file)]
    for name in files:
        args += ["-f", str(ROOT / name)]
    return subprocess.run(
        [*args, *command],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _compose_services(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    return {name: environment(service) for name, service in config["services"].items()}


@needs_docker_compose
@pytest.mark.parametrize("files", [*FILE_SETS, ("compose.yaml", "compose.gpu.yaml")], ids=set_id)
def test_docker_compose_accepts_the_files(files: tuple[str, ...], tmp_path: Path) -> None:
    done = _compose(files, TEST_ENV, tmp_path, "config", "-q")
    assert done.returncode == 0, done.stderr
    without_key = _compose(files, {}, tmp_path, "config", "-q")
    if files in KEYED:
        assert without_key.returncode != 0, f"{set_id(files)} starts without a Qdrant key"
        assert "QDRANT_API_KEY" in without_key.stderr, without_key.stderr
    else:  # compose.yaml: an empty env file and no QDRANT_API_KEY are enough
        assert without_key.returncode == 0, without_key.stderr


@needs_docker_compose
def test_docker_compose_gives_qdrant_and_its_clients_the_same_key(tmp_path: Path) -> None:
    key = TEST_ENV["QDRANT_API_KEY"]
    keyed = _compose_services(
        _compose(("compose.yaml", "compose.apikey.yaml"), TEST_ENV, tmp_path, "config")
    )
    assert keyed["qdrant"].get("QDRANT__SERVICE__API_KEY") == key
    assert keyed["app"].get("QDRANT_API_KEY") == key
    assert keyed["ingest"].get("QDRANT_API_KEY") == key
    # compose.yaml alone ignores a QDRANT_API_KEY set in the environment: no half-on key.
    plain = _compose_services(_compose(("compose.yaml",), TEST_ENV, tmp_path, "config"))
    for name, env in plain.items():
        assert "QDRANT__SERVICE__API_KEY" not in env and "QDRANT_API_KEY" not in env, name


@needs_docker_compose
def test_env_example_compose_file_line_turns_the_key_on(tmp_path: Path) -> None:
    """The commented COMPOSE_FILE line of .env.example, uncommented, is all `.env` needs."""
    line = next(
        row[2:] for row in _env_example_text().splitlines() if row.startswith("# COMPOSE_FILE=")
    )
    env_file_text = f"{line}\nQDRANT_API_KEY=from-env-file\n"
    services = _compose_services(_compose((), {}, tmp_path, "config", env_file_text=env_file_text))
    assert services["qdrant"].get("QDRANT__SERVICE__API_KEY") == "from-env-file"
    assert services["app"].get("QDRANT_API_KEY") == "from-env-file"
    assert services["ingest"].get("QDRANT_API_KEY") == "from-env-file"
