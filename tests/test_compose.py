"""The deployment files agree with the settings the app reads, and keep the stack private.

compose.yaml (one machine), compose.cluster.yaml (past one machine) and compose.gpu.yaml (an
override) are read as YAML and checked against `rag.settings.Settings`: every variable the kb
containers get is a real setting with a valid value, every URL names a service of the same file
on a port that service exposes, and so on. When Debian's `docker-compose` is on PATH the files
are also validated by it (`config -q`).
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
OVERRIDES = ("compose.gpu.yaml",)
TEST_ENV = {"QDRANT_API_KEY": "test-key"}  # the one variable without a default
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


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
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


@pytest.mark.parametrize("stack", STACKS)
def test_kb_services_set_only_real_settings(stack: str, clean_settings_env: None) -> None:
    services = load(stack)["services"]
    kb_services = {name: s for name, s in services.items() if is_kb_service(s)}
    assert {"app", "ingest"} <= set(kb_services)
    for name, service in kb_services.items():
        env = environment(service)
        unknown = sorted(set(env) - set(SETTING_ENV))
        assert not unknown, f"{stack}: {name} sets {unknown}, which no Settings field reads"
        for upstream in ("QDRANT_URL", "QDRANT_API_KEY", "OLLAMA_HOST"):
            assert upstream in env, f"{stack}: {name} must set {upstream}"
        # The values the stack gives by default are valid settings.
        settings = Settings(**{SETTING_ENV[key]: value for key, value in env.items()})
        assert settings.uses_server
        assert settings.qdrant_api_key is not None
        assert settings.qdrant_api_key.get_secret_value() == TEST_ENV["QDRANT_API_KEY"]
        assert settings.model in settings.models


@pytest.mark.parametrize("stack", STACKS)
def test_app_gets_models_and_password_from_the_environment(stack: str) -> None:
    raw_env = environment(load_raw(stack)["services"]["app"])
    assert raw_env["KB_MODELS"].startswith("${KB_MODELS")
    assert raw_env["KB_APP_PASSWORD"].startswith("${KB_APP_PASSWORD")
    assert raw_env["QDRANT_API_KEY"].startswith("${QDRANT_API_KEY")
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
                # The only bind mount: documents handed to the one-shot ingest, read-only.
                assert read_only and service.get("profiles"), f"{stack}: {name} mounts {source}"
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


@pytest.mark.parametrize("stack", STACKS)
def test_long_running_services_have_healthchecks(stack: str) -> None:
    services = load(stack)["services"]
    for name, service in services.items():
        if is_one_shot(service):
            continue
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{stack}: {name} has no check"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), f"{stack}: {name}"
    qdrant = [s for s in services.values() if image_repo(s) == "qdrant/qdrant"]
    for service in qdrant:  # the image has no curl: the check must not need it
        command = " ".join(service["healthcheck"]["test"])
        assert "curl" not in command and "wget" not in command
        assert "/dev/tcp/127.0.0.1/6333" in command and "/readyz" in command


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


@pytest.mark.parametrize("stack", STACKS)
def test_telemetry_off_and_qdrant_key_set(stack: str) -> None:
    raw = load_raw(stack)["services"]
    services = load(stack)["services"]
    qdrant = [n for n, s in services.items() if image_repo(s) == "qdrant/qdrant"]
    assert qdrant
    for name in qdrant:
        assert environment(services[name])["QDRANT__TELEMETRY_DISABLED"] == "true"
        assert environment(raw[name])["QDRANT__SERVICE__API_KEY"].startswith("${QDRANT_API_KEY")
    # compose refuses to start without a key rather than run Qdrant open.
    with pytest.raises(MissingVariableError):
        load(stack, {})


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
    assert set(pins) == {"qdrant/qdrant", "ollama/ollama"}
    assert all(len(tags) == 1 for tags in pins.values()), pins


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
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
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
    assert ".streamlit" not in " ".join(lines), "the image needs .streamlit/config.toml"


def test_streamlit_config_is_private_and_matches_settings() -> None:
    text = (ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8")
    config = tomllib.loads(text)
    assert config["browser"]["gatherUsageStats"] is False
    assert config["server"]["headless"] is True
    assert config["server"]["maxUploadSize"] == Settings.model_construct().upload_max_mb
    assert config["client"]["toolbarMode"] == "minimal"
    assert not re.search(r"https?://", text), "nothing in the config may point at a remote site"


# -- docker-compose's own validation --

DOCKER_COMPOSE = shutil.which("docker-compose")


def _compose_config(files: tuple[str, ...], env: Mapping[str, str], tmp_path: Path) -> Any:
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("", encoding="utf-8")
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KB_", "QDRANT_", "OLLAMA_", "COMPOSE_"))
    }
    args = [str(DOCKER_COMPOSE), "--env-file", str(empty_env_file)]
    for name in files:
        args += ["-f", str(ROOT / name)]
    return subprocess.run(
        [*args, "config", "-q"],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(DOCKER_COMPOSE is None, reason="docker-compose is not installed")
@pytest.mark.parametrize(
    "files", [("compose.yaml",), ("compose.cluster.yaml",), ("compose.yaml", "compose.gpu.yaml")]
)
def test_docker_compose_accepts_the_files(files: tuple[str, ...], tmp_path: Path) -> None:
    done = _compose_config(files, TEST_ENV, tmp_path)
    assert done.returncode == 0, done.stderr
    refused = _compose_config(files, {}, tmp_path)
    assert refused.returncode != 0 and "QDRANT_API_KEY" in refused.stderr, refused.stderr
