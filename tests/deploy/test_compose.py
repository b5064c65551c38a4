"""docker-compose.yaml, the Dockerfile and scripts/generate-env.sh, checked by reading them.

No container engine runs here, so `docker compose config` cannot; these tests parse the files and
pin down what must not quietly regress: no secret without a ``${NAME:?}`` reference to .env, each
secret only in the services that use it, published ports on loopback only, a real auth manager,
Celery, init ordering through healthchecks, and an image built from uv.lock.
"""

from __future__ import annotations

import base64
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ctloop.io.storage import S3Storage, open_storage
from ctloop.settings import load_settings
from tests.helpers import REPO

COMPOSE_FILE = REPO / "docker-compose.yaml"
GENERATE_ENV = REPO / "scripts" / "generate-env.sh"

CONTROL_PLANE = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}
AIRFLOW = CONTROL_PLANE | {"airflow-worker", "airflow-init"}
ONE_SHOTS = {"airflow-init", "mlflow-init", "minio-init", "mlflow-users-init"}
SERVICES = AIRFLOW | {
    "postgres",
    "redis",
    "minio",
    "minio-init",
    "mlflow-init",
    "mlflow",
    "mlflow-users-init",
}

# Which services see each .env variable. A new exposure has to be made here, on purpose.
EXPOSURE = {
    "POSTGRES_PASSWORD": {"postgres"},
    "AIRFLOW_DB_PASSWORD": {"postgres", "airflow-init"} | CONTROL_PLANE,
    "CELERY_DB_PASSWORD": {"postgres", "airflow-init", "airflow-scheduler", "airflow-worker"},
    "MLFLOW_DB_PASSWORD": {"postgres", "mlflow-init", "mlflow"},
    "CTLOOP_DB_PASSWORD": {"postgres", "airflow-init", "airflow-apiserver", "airflow-worker"},
    "REDIS_PASSWORD": {"redis", "airflow-scheduler", "airflow-worker"},
    "MINIO_ROOT_USER": {"minio", "minio-init"},
    "MINIO_ROOT_PASSWORD": {"minio", "minio-init"},
    "CTLOOP_S3_ACCESS_KEY_ID": {"minio-init", "airflow-apiserver", "airflow-worker"},
    "CTLOOP_S3_SECRET_ACCESS_KEY": {"minio-init", "airflow-apiserver", "airflow-worker"},
    "MLFLOW_S3_ACCESS_KEY_ID": {"minio-init", "mlflow"},
    "MLFLOW_S3_SECRET_ACCESS_KEY": {"minio-init", "mlflow"},
    "MLFLOW_KEK_PASSPHRASE": {"mlflow"},
    # MLflow's admin is for people (and for making ctloop's user); tasks sign in as ctloop.
    "MLFLOW_ADMIN_PASSWORD": {"mlflow", "mlflow-users-init"},
    "MLFLOW_CTLOOP_PASSWORD": {"mlflow-users-init", "airflow-apiserver", "airflow-worker"},
    "MLFLOW_FLASK_SECRET_KEY": {"mlflow"},
    "AIRFLOW_ADMIN_PASSWORD": {"airflow-init"},
    "AIRFLOW_FERNET_KEY": CONTROL_PLANE,
    # The scheduler signs task tokens, the api-server checks them; workers only carry them.
    "AIRFLOW_JWT_SECRET": {"airflow-apiserver", "airflow-scheduler"},
    # UI sessions; log requests to the processes that serve logs (triggerer, workers).
    "AIRFLOW_API_SECRET_KEY": {"airflow-apiserver", "airflow-triggerer", "airflow-worker"},
}
# The only interpolations that may have a default or none: they are not secrets.
NOT_SECRETS = {"CTLOOP_IMAGE", "CTLOOP_CODE_VERSION"}
PUBLISHED = {"airflow-apiserver": {8080}, "mlflow": {5000}, "minio": {9000}}

REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:\?|:-|\?|-)?(?P<arg>[^}]*)\}")
# Environment variables that hold a secret, or a URL with one in it.
SECRET_NAME = re.compile(
    r"PASSWORD|SECRET|PASSPHRASE|FERNET|_KEY$|KEY_ID$|TOKEN|ROOT_USER|REDISCLI_AUTH|MC_HOST"
    r"|SQL_ALCHEMY_CONN|BROKER_URL|RESULT_BACKEND|DATABASE_URL|BACKEND_STORE_URI"
)
CREDENTIALS_IN_URL = re.compile(r"://(?P<user>[^/@:\s]*):(?P<password>[^/@\s]+)@")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def strings(node: object) -> Iterator[str]:
    """Every string in a parsed YAML document: keys and values, at any depth."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "write environment as a mapping, so anchors can merge it"
    return {key: str(value) for key, value in env.items()}


def references(text: str) -> Iterator[re.Match]:
    """The interpolations in ``text``; ``$$`` is a literal dollar (the container's shell expands it)."""
    for part in text.split("$$"):
        yield from REFERENCE.finditer(part)


def referenced(node: object) -> set[str]:
    """The .env variables a definition interpolates."""
    return {m["name"] for text in strings(node) for m in references(text)}


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation: ``${NAME}``, ``${NAME:-default}``, ``${NAME:?error}``, ``$$``."""

    def replace(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        value = env.get(name, "")
        if op == ":?" and not value:
            raise KeyError(f"{name}: {arg}")
        return value or (arg if op == ":-" else "")

    return "$".join(REFERENCE.sub(replace, part) for part in text.split("$$"))


def interpolated_env(service: dict, env: dict[str, str]) -> dict[str, str]:
    return {key: interpolate(value, env) for key, value in environment(service).items()}


def dockerfile_env() -> dict[str, str]:
    """The runtime image's ENV settings (the last stage)."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    last_stage = text.rsplit("\nFROM ", 1)[1]
    found: dict[str, str] = {}
    for line in last_stage.splitlines():
        if line.startswith("ENV "):
            found.update(re.findall(r"(\w+)=(\S+)", line))
    return found


def run_generate_env(*args: str, output: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(GENERATE_ENV), "--output", str(output), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
    )


def read_env(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("env") / ".env"
    assert run_generate_env(output=path).returncode == 0
    return read_env(path)


# --- the services --------------------------------------------------------------------------------


def test_every_service_of_the_stack_is_there(services: dict) -> None:
    assert set(services) >= SERVICES
    assert set(services) - SERVICES == set(), "a new service: add it to SERVICES and EXPOSURE"


def test_airflow_runs_celery_with_the_fab_auth_manager_and_no_examples(services: dict) -> None:
    for name in AIRFLOW:
        env = environment(services[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert (
            env["AIRFLOW__CORE__AUTH_MANAGER"]
            == "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
        ), name
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == "false", name
    assert "SimpleAuthManager" not in COMPOSE_FILE.read_text()
    for name in ("airflow-scheduler", "airflow-worker"):
        env = environment(services[name])
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://:${REDIS_PASSWORD:?"), name
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql"), name
    assert services["airflow-worker"]["command"][:3] == ["airflow", "celery", "worker"]


def test_every_airflow_and_mlflow_container_runs_the_one_image(services: dict) -> None:
    names = AIRFLOW | {"mlflow", "mlflow-init", "mlflow-users-init"}
    assert {services[name]["image"] for name in names} == {"${CTLOOP_IMAGE:-ctloop:local}"}
    assert all(services[name]["build"]["context"] == "." for name in names)


def test_other_images_are_pinned_by_tag(services: dict) -> None:
    for name, service in services.items():
        image = service["image"]
        if "build" in service:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository, f"{name}: {image!r} has no repository"
        assert tag, f"{name}: pin {image!r} by tag"
        assert tag != "latest", f"{name}: pin {image!r} by a tag other than latest"


# --- secrets -------------------------------------------------------------------------------------


def test_every_interpolated_secret_is_required(compose: dict) -> None:
    for text in strings(compose):
        for match in references(text):
            if match["name"] in NOT_SECRETS:
                continue
            message = f"{match[0]}: a secret has no default; write ${{{match['name']}:?message}}"
            assert match["op"] == ":?", message
            assert match["arg"].strip(), message


def masked(text: str) -> str:
    """``text`` with each interpolation replaced by ``<NAME>``, so URLs around them can be parsed."""
    return "$".join(REFERENCE.sub(lambda m: f"<{m['name']}>", part) for part in text.split("$$"))


def test_no_literal_secret_anywhere_in_the_file(compose: dict) -> None:
    for text in strings(compose):
        for match in CREDENTIALS_IN_URL.finditer(masked(text)):
            # A user name may be literal (the roles are named after their databases); a password not.
            assert re.fullmatch(r"<\w+>", match["password"]), f"{text!r}: a literal password in a URL"
        # Outside interpolations: no key-like run of letters and digits.
        for token in re.findall(r"[A-Za-z0-9+/=_-]{24,}", masked(text)):
            if re.fullmatch(r"[A-Z0-9_]+", token):  # a variable's name
                continue
            assert not (re.search(r"\d", token) and re.search(r"[A-Za-z]", token)), (
                f"{text!r}: {token!r} looks like a key"
            )
    for service_name, service in compose["services"].items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                # All of it from .env, or a URL whose credentials are (checked above).
                value = masked(value)
                assert re.fullmatch(r"<\w+>", value) or CREDENTIALS_IN_URL.search(value), (
                    f"{service_name}.{key} = {value!r}: a secret must come from .env"
                )


def test_each_secret_reaches_only_the_services_that_use_it(services: dict) -> None:
    seen = {
        name: {svc for svc, service in services.items() if name in referenced(service)} for name in EXPOSURE
    }
    assert seen == EXPOSURE
    every = {name for service in services.values() for name in referenced(service)} - NOT_SECRETS
    assert every == set(EXPOSURE), "a new .env variable: add it to EXPOSURE and to scripts/generate-env.sh"


def test_workers_mlflow_and_minio_never_see_airflow_keys_or_database(services: dict) -> None:
    database, fernet, jwt = (
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
    )
    expected = {
        "airflow-apiserver": {database, fernet, jwt},
        "airflow-scheduler": {database, fernet, jwt},
        "airflow-dag-processor": {database, fernet},
        "airflow-triggerer": {database, fernet},
        "airflow-init": {database},
    }
    for name, service in services.items():
        assert set(environment(service)) & {database, fernet, jwt} == expected.get(name, set()), name


def test_no_service_reads_env_files_wholesale(services: dict) -> None:
    # env_file would hand every secret in .env to the container; each must be routed by name.
    assert [name for name, service in services.items() if "env_file" in service] == []


def test_compose_refuses_to_start_without_env(services: dict, generated: dict[str, str]) -> None:
    for service in services.values():
        for value in environment(service).values():
            if referenced(value) & set(EXPOSURE):
                with pytest.raises(KeyError):
                    interpolate(value, {})
        interpolated_env(service, generated)  # and starts with the generated one


@pytest.mark.parametrize(
    ("setting", "variable"),
    [
        ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW_JWT_SECRET"),
        ("AIRFLOW__API__SECRET_KEY", "AIRFLOW_API_SECRET_KEY"),
    ],
)
def test_components_that_share_a_key_read_the_same_variable(
    services: dict, setting: str, variable: str
) -> None:
    # Unset, each Airflow component invents its own key, and what one signs the others reject.
    for name in EXPOSURE[variable]:
        assert REFERENCE.fullmatch(environment(services[name])[setting])["name"] == variable, name


# --- network -------------------------------------------------------------------------------------


def published(service: dict) -> list[tuple[str, int]]:
    found = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            found.append((port.get("host_ip", ""), int(port["published"])))
        else:
            parts = str(port).split(":")
            assert len(parts) == 3, f"{port!r}: name the host address (127.0.0.1:HOST:CONTAINER)"
            found.append((parts[0], int(parts[1])))
    return found


def test_published_ports_bind_loopback_only(services: dict) -> None:
    ports = {name: published(service) for name, service in services.items() if service.get("ports")}
    assert {name: {port for _, port in found} for name, found in ports.items()} == PUBLISHED
    assert {host for found in ports.values() for host, _ in found} == {"127.0.0.1"}
    for name, service in services.items():
        assert service.get("network_mode") != "host", name


def test_databases_broker_and_minio_console_are_not_published(services: dict) -> None:
    assert "ports" not in services["postgres"]
    assert "ports" not in services["redis"]
    assert [port for _, port in published(services["minio"])] == [9000]
    assert services["minio"]["command"][-2:] == ["--console-address", ":9001"]


# --- ordering ------------------------------------------------------------------------------------


def test_long_running_services_have_healthchecks_and_one_shots_do_not_restart(services: dict) -> None:
    for name, service in services.items():
        if name in ONE_SHOTS:
            assert service.get("restart", "no") == "no", name
        else:
            assert service.get("restart") == "always", name
            assert service["healthcheck"]["test"], name


def test_dependencies_wait_for_health_or_completion(services: dict) -> None:
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for target, spec in depends.items():
            expected = "service_completed_successfully" if target in ONE_SHOTS else "service_healthy"
            assert spec["condition"] == expected, f"{name} -> {target}"
            if target not in ONE_SHOTS:
                assert "healthcheck" in services[target], target


@pytest.mark.parametrize(
    ("service", "needs"),
    [
        ("minio-init", {"minio"}),
        ("mlflow-init", {"postgres"}),
        ("mlflow", {"mlflow-init", "minio-init"}),
        ("mlflow-users-init", {"mlflow"}),
        ("airflow-init", {"postgres"}),
        ("airflow-apiserver", {"postgres", "airflow-init"}),
        ("airflow-scheduler", {"postgres", "redis", "airflow-init"}),
        ("airflow-dag-processor", {"postgres", "airflow-init"}),
        ("airflow-triggerer", {"postgres", "airflow-init"}),
        (
            "airflow-worker",
            {"redis", "airflow-init", "airflow-apiserver", "mlflow", "mlflow-users-init", "minio-init"},
        ),
    ],
)
def test_init_order(services: dict, service: str, needs: set[str]) -> None:
    assert needs <= set(services[service]["depends_on"])


# --- the image, mounts and configuration ---------------------------------------------------------


def test_the_image_is_built_from_the_lock() -> None:
    text = (REPO / "Dockerfile").read_text()
    syncs = re.findall(r"^RUN .*uv sync (.*)$", text, re.M)
    assert syncs, "the Dockerfile runs no uv sync"
    assert all("--frozen" in s for s in syncs), syncs
    assert all("--no-dev" in s for s in syncs), syncs
    assert "COPY pyproject.toml uv.lock" in text
    bases = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert bases, "the Dockerfile has no ARG PYTHON_IMAGE"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", bases[0]), bases
    installs = re.findall(r"pip install ([^\n]*)", text)
    assert installs == ["--no-cache-dir --disable-pip-version-check uv==${UV_VERSION}"], installs
    assert re.search(r"^USER 50000$", text, re.M)


def test_build_context_is_what_the_dockerfile_copies_and_never_env() -> None:
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert lines[0] == "*", "the build context is an allowlist"
    allowed = {line[1:] for line in lines if line.startswith("!")}
    assert not any(".env" in line or ".git" in line for line in allowed)
    copied = re.findall(r"^COPY (?!--from)(?:--\S+ )*(.+) \S+$", (REPO / "Dockerfile").read_text(), re.M)
    for sources in copied:
        for source in sources.split():
            assert source in allowed, f"{source}: copied by the Dockerfile, left out by .dockerignore"


def test_init_services_migrate_and_create_the_admin_from_env(services: dict) -> None:
    script = (REPO / "deploy" / "airflow-init.sh").read_text()
    for step in ("airflow db migrate", "create_tables(load_settings())", "app.backend"):
        assert step in script, step
    assert '--password "$AIRFLOW_ADMIN_PASSWORD"' in script
    assert (
        "COPY --chmod=755 deploy/airflow-init.sh /usr/local/bin/airflow-init"
        in (REPO / "Dockerfile").read_text()
    )
    assert services["airflow-init"]["command"] == ["airflow-init"]
    assert "mlflow db upgrade" in " ".join(services["mlflow-init"]["command"])


def test_dags_plugins_specs_and_suites_are_mounted_where_the_image_looks(services: dict) -> None:
    image_env = dockerfile_env()
    home = image_env["AIRFLOW_HOME"]
    for name in AIRFLOW:
        mounts = {m.split(":")[1]: m.split(":")[0] for m in services[name]["volumes"]}
        assert mounts[f"{home}/dags"] == "./dags", name
        assert mounts[f"{home}/plugins"] == "./plugins", name
        assert mounts[image_env["CTLOOP_PIPELINES_DIR"]] == "./include/pipelines", name
        assert mounts[image_env["CTLOOP_EXPECTATIONS_DIR"]] == "./include/expectations", name
        # the pipelines' own feature and training modules, imported through the image's PYTHONPATH
        for package in ("features", "trainers"):
            assert mounts[f"{image_env['PYTHONPATH']}/{package}"] == f"./include/{package}", name
        assert mounts[image_env["CTLOOP_HOME"]] == "ctloop-home", name
        assert all(m.endswith(":ro") for m in services[name]["volumes"] if m.startswith("./")), name


def test_the_same_settings_select_s3_the_mlflow_server_and_postgres(services: dict, generated) -> None:
    env = interpolated_env(services["airflow-worker"], generated)
    settings = load_settings(env)
    assert settings.mlflow_tracking_uri == "http://mlflow:5000"
    assert settings.mlflow_artifact_root is None  # the server chooses: mlflow-artifacts:/ -> s3://mlflow
    assert (
        settings.database_url
        == f"postgresql+psycopg2://ctloop:{generated['CTLOOP_DB_PASSWORD']}@postgres/ctloop"
    )
    storage = open_storage(settings.storage_root, settings)
    assert storage == S3Storage("ctloop", "storage", "http://minio:9000")
    assert env["AWS_ACCESS_KEY_ID"] == generated["CTLOOP_S3_ACCESS_KEY_ID"]
    # The UI plugin in the api-server reads the same ledger, storage and MLflow as the tasks.
    api_server = environment(services["airflow-apiserver"])
    for key, value in environment(services["airflow-worker"]).items():
        if key.startswith(("CTLOOP_", "AWS_", "MLFLOW_")):
            assert api_server[key] == value, key
    mlflow = interpolated_env(services["mlflow"], generated)
    assert mlflow["MLFLOW_ARTIFACTS_DESTINATION"] == "s3://mlflow/artifacts"
    assert "--serve-artifacts" in services["mlflow"]["command"]
    init = (REPO / "deploy" / "minio-init.sh").read_text()
    assert "minio/ctloop" in init
    assert "minio/mlflow" in init


def test_mlflow_answers_only_signed_in_users_and_tasks_sign_in_as_ctloop(services: dict, generated) -> None:
    import configparser

    mlflow = services["mlflow"]
    assert "--app-name=basic-auth" in mlflow["command"]
    env = interpolated_env(mlflow, generated)
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == generated["MLFLOW_ADMIN_PASSWORD"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in mlflow["volumes"]}
    assert mounts[env["MLFLOW_AUTH_CONFIG_PATH"]] == "./deploy/mlflow-basic-auth.ini"
    config = configparser.ConfigParser()
    config.read(REPO / "deploy" / "mlflow-basic-auth.ini")
    auth = config["mlflow"]
    assert "admin_password" not in auth, "the admin's password comes from .env"
    assert auth["admin_username"] == "admin"
    assert auth["default_permission"] in ("READ", "NO_PERMISSIONS")
    # Users and permissions survive a new container: their database is on a named volume.
    database = Path(auth["database_uri"].removeprefix("sqlite:///"))
    assert mounts[str(database.parent)] == "mlflow-auth"
    assert "mlflow-auth" in yaml.safe_load(COMPOSE_FILE.read_text())["volumes"]
    # ctloop's user is made by the admin; the tasks and the UI plugin use it, never the admin.
    users = interpolated_env(services["mlflow-users-init"], generated)
    assert (users["MLFLOW_TRACKING_USERNAME"], users["MLFLOW_TRACKING_PASSWORD"]) == (
        "admin",
        generated["MLFLOW_ADMIN_PASSWORD"],
    )
    script = (REPO / "deploy" / "mlflow-users-init.py").read_text()
    assert 'USER = "ctloop"' in script
    assert 'os.environ["MLFLOW_CTLOOP_PASSWORD"]' in script
    for name in ("airflow-worker", "airflow-apiserver"):
        tasks = interpolated_env(services[name], generated)
        assert tasks["MLFLOW_TRACKING_URI"] == "http://mlflow:5000", name
        assert tasks["MLFLOW_TRACKING_USERNAME"] == "ctloop", name
        assert tasks["MLFLOW_TRACKING_PASSWORD"] == generated["MLFLOW_CTLOOP_PASSWORD"], name
        # Models' artifacts only through the server: no way to the mlflow bucket itself.
        assert not any(key.startswith(("MLFLOW_S3", "MLFLOW_ARTIFACT")) for key in tasks), name
        assert generated["MLFLOW_S3_SECRET_ACCESS_KEY"] not in tasks.values(), name


def test_postgres_init_creates_each_database_the_urls_name(compose: dict) -> None:
    script = REPO / "deploy" / "postgres-init.sh"
    # Executable, so Postgres' entrypoint runs it instead of sourcing it into its own shell.
    assert script.stat().st_mode & stat.S_IXUSR
    created = dict(re.findall(r'^create_database (\w+) "\$(\w+)"$', script.read_text(), re.M))
    used = {}
    for url in strings(compose):
        if url.startswith(("postgresql", "db+postgresql")):
            user, variable, database = re.search(
                r"://(\w+):\$\{(\w+):\?[^}]*\}@postgres/(\w+)$", url
            ).groups()
            assert user == database, url
            used[user] = variable
    assert used == created
    assert set(created.values()) <= set(environment(compose["services"]["postgres"]))


# --- scripts/generate-env.sh ---------------------------------------------------------------------


def test_generated_env_is_private_and_defines_every_required_variable(tmp_path) -> None:
    path = tmp_path / ".env"
    done = run_generate_env(output=path)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    required = referenced(yaml.safe_load(COMPOSE_FILE.read_text()))
    values = read_env(path)
    assert required - NOT_SECRETS <= {name for name, value in values.items() if value}
    assert not any(value in done.stdout + done.stderr for value in values.values()), "a secret was printed"
    assert [entry.name for entry in tmp_path.iterdir()] == [".env"], "a temporary file was left behind"


def test_generated_values_are_random_and_fit_where_they_go(tmp_path, generated) -> None:
    assert run_generate_env(output=tmp_path / ".env").returncode == 0
    again = read_env(tmp_path / ".env")
    assert all(generated[name] != again[name] for name in EXPOSURE)
    assert len(set(generated.values())) == len(generated)
    assert len(base64.urlsafe_b64decode(generated["AIRFLOW_FERNET_KEY"])) == 32
    from cryptography.fernet import Fernet  # what Airflow builds from the key

    Fernet(generated["AIRFLOW_FERNET_KEY"])
    for name, value in generated.items():
        if name != "AIRFLOW_FERNET_KEY":
            assert re.fullmatch(r"[0-9a-f]{16,}", value), f"{name}: hex, so it needs no quoting in URLs"
    for name in ("MINIO_ROOT_USER", "CTLOOP_S3_ACCESS_KEY_ID", "MLFLOW_S3_ACCESS_KEY_ID"):
        assert 3 <= len(generated[name]) <= 20, name  # MinIO's limits on access keys
    for name in ("MINIO_ROOT_PASSWORD", "CTLOOP_S3_SECRET_ACCESS_KEY", "MLFLOW_S3_SECRET_ACCESS_KEY"):
        assert 8 <= len(generated[name]) <= 40, name  # ... and on secret keys


def test_generate_env_keeps_an_existing_file_unless_forced(tmp_path) -> None:
    path = tmp_path / ".env"
    path.write_text("POSTGRES_PASSWORD=in-use\n")
    path.chmod(0o644)
    refused = run_generate_env(output=path)
    assert refused.returncode != 0
    assert "--force" in refused.stderr
    assert path.read_text() == "POSTGRES_PASSWORD=in-use\n"
    forced = run_generate_env("--force", output=path)
    assert forced.returncode == 0, forced.stderr
    assert read_env(path)["POSTGRES_PASSWORD"] != "in-use"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
