"""Dockerfile and compose.yaml (SPEC §15): lint-clean, and running exactly the README's production steps.
No container engine runs here, so the files are checked, not run: hadolint on the Dockerfile, the Compose
specification's schema on compose.yaml, and each command compared with the README's "Production" block."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PLATFORM_SERVICES = {"migrate", "web", "worker", "beat"}
# Image housekeeping that has no place on a host install: apt's lists, the non-root user, its media dir.
IMAGE_ONLY = [r"^apt-get update$", r"^rm -rf '/var/lib/apt/lists/\*'$", r"^groupadd ", r"^useradd ", r"^mkdir -p var/media$",
              r"^chown 10001:10001 var/media$"]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Production\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)[1]
    return [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)  # join continuation lines
    instructions = []
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), " ".join(rest.split())))
    return instructions


def without_env_prefix(command: str) -> str:
    words = shlex.split(command)
    while words and re.match(r"^[A-Z_]+=", words[0]):
        words.pop(0)
    return shlex.join(words)


def dockerfile_commands() -> list[str]:
    commands = []
    for keyword, rest in dockerfile_instructions():
        if keyword == "RUN":
            commands += [without_env_prefix(part.strip()) for part in rest.split("&&")]
        elif keyword == "CMD":
            commands.append(shlex.join(yaml.safe_load(rest)))
    return commands


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def compose_commands() -> list[str]:
    commands = []
    for name in sorted(PLATFORM_SERVICES):
        command = compose()["services"][name]["command"]
        if command[:2] == ["sh", "-c"]:
            commands += [part.strip() for part in command[2].split("&&")]
        else:
            commands.append(shlex.join(command))
    return commands


def normalized(command: str) -> str:
    return shlex.join(shlex.split(command))


def test_the_image_and_compose_run_exactly_the_readme_steps():
    readme = [normalized(c) for c in readme_commands()]
    shipped = [normalized(c) for c in dockerfile_commands() + compose_commands()]
    assert [c for c in readme if c not in shipped] == [], "README steps the image/compose do not run"
    extra = [c for c in shipped if c not in readme and not any(re.match(p, c) for p in IMAGE_ONLY)]
    assert extra == [], "image/compose steps the README does not list"
    # Install before collect before start, as in the README.
    image = [normalized(c) for c in dockerfile_commands()]
    order = [image.index(normalized(c)) for c in readme_commands() if normalized(c) in image]
    assert order == sorted(order)


def test_the_image_runs_as_a_non_root_user_with_a_healthcheck_on_healthz():
    instructions = dockerfile_instructions()
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert [k for k, _ in instructions].index("USER") > max(i for i, (k, _) in enumerate(instructions) if k == "RUN")
    healthchecks = [rest for keyword, rest in instructions if keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "http://127.0.0.1:8000/healthz" in healthchecks[0]
    assert any("collectstatic" in c for c in dockerfile_commands())
    assert ".env" in (ROOT / ".dockerignore").read_text().split()  # secrets never baked into the image


def test_the_commands_name_what_exists_in_the_repository():
    for command in dockerfile_commands() + compose_commands() + readme_commands():
        words = shlex.split(command)
        if "manage.py" in words:
            assert (ROOT / "manage.py").exists()
        if "config.wsgi" in words:
            assert (ROOT / "config" / "wsgi.py").exists() and (ROOT / "gunicorn.conf.py").exists()
        if "-A" in words:
            assert words[words.index("-A") + 1] == "config" and (ROOT / "config" / "celery.py").exists()
        if "-r" in words:
            assert (ROOT / words[words.index("-r") + 1]).exists()


def test_compose_has_the_services_and_wires_them_together():
    spec = compose()
    services = spec["services"]
    assert set(services) == {"db", "redis", *PLATFORM_SERVICES}
    for name in PLATFORM_SERVICES:
        service = services[name]
        assert service["build"] == "." and service["env_file"] == ".env", name
        env = service["environment"]
        assert env["DEBUG"] == "false" and env["RUNS_EXECUTOR"] == "celery", name
        assert "@db:5432/" in env["DATABASE_URL"] and env["CELERY_BROKER_URL"].startswith("redis://redis:6379/"), name
        assert set(service.get("depends_on", {})) <= set(services), name
    assert services["web"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["db"]["healthcheck"]["test"] and services["redis"]["healthcheck"]["test"]
    assert services["web"]["volumes"] == services["worker"]["volumes"] == ["media:/app/var/media"]


def tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `make dev-deps` installs it (requirements-dev.txt)")
    return str(path)


def test_hadolint_passes():
    result = subprocess.run([tool("hadolint"), "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_matches_the_compose_specification(tmp_path):
    check = [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec"]
    result = subprocess.run([*check, "compose.yaml"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    # The check has teeth: a misspelt key fails it.
    broken = tmp_path / "compose.yaml"
    broken.write_text((ROOT / "compose.yaml").read_text().replace("    depends_on:\n", "    depend_on:\n", 1))
    assert subprocess.run([*check, str(broken)], capture_output=True).returncode != 0
