"""Where ctloop keeps its state, read from the environment so one code base serves every stack.

The embedded default puts everything under ``CTLOOP_HOME`` (``./.ctloop``): Airflow's, MLflow's
and ctloop's own SQLite databases, MLflow artifacts and ctloop's storage. A production stack points
the same variables at Postgres, an MLflow server and S3 instead.

Every ``CTLOOP_*`` variable in the environment must be one ctloop knows: a field below or one of
:data:`READ_ELSEWHERE`. pydantic-settings only looks up the names of its fields, so its
``extra="forbid"`` never sees a misspelt variable; :class:`_Environment` checks the names itself,
because a typo such as ``CTLOOP_STORAGE_ROT`` would otherwise silently write to the default place.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from ctloop.errors import SettingsError

PACKAGE_DIR = Path(__file__).resolve().parent
PREFIX = "CTLOOP_"

# Bounds on every S3 call (ctloop.io.storage.S3Storage): worst case about
# S3_MAX_ATTEMPTS x (S3_CONNECT_TIMEOUT_S + S3_READ_TIMEOUT_S) plus botocore's backoff.
S3_CONNECT_TIMEOUT_S = 5.0
S3_READ_TIMEOUT_S = 20.0
S3_MAX_ATTEMPTS = 3

# CTLOOP_* names that other parts of the stack read; they are allowed in the environment.
READ_ELSEWHERE: Mapping[str, str] = {
    "CTLOOP_CODE_VERSION": "the code version recorded on runs (ctloop.registry.provenance; images set it)",
    "CTLOOP_MLFLOW_UI_URL": "where the UI plugin links to MLflow (ctloop.ui.links)",
    "CTLOOP_FAULT": "a fault point to kill or fail the process at, in tests (ctloop.registry.faults)",
    "CTLOOP_DB_PASSWORD": "ctloop's Postgres password (docker-compose.yaml, deploy/postgres-init.sh)",
    "CTLOOP_S3_ACCESS_KEY_ID": "ctloop's S3 user (docker-compose.yaml, deploy/minio-init.sh)",
    "CTLOOP_S3_SECRET_ACCESS_KEY": "ctloop's S3 secret (docker-compose.yaml, deploy/minio-init.sh)",
    "CTLOOP_IMAGE": "the image docker compose runs (docker-compose.yaml)",
    "CTLOOP_KEEP_TEST_HOME": "keep the test session's CTLOOP_HOME (tests/conftest.py)",
}


class Settings(BaseSettings):
    """The resolved locations; build one with :func:`load_settings`, change one with ``model_copy``."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, frozen=True, extra="forbid", env_ignore_empty=True, validate_by_name=True
    )

    home: Path = Path(".ctloop")
    storage_root: str = Field(default_factory=lambda data: str(data["home"] / "storage"))
    pipelines_dir: Path = PACKAGE_DIR.parent / "pipelines"
    expectations_dir: Path = PACKAGE_DIR.parent / "expectations"
    mlflow_tracking_uri: str = Field(
        default_factory=lambda data: f"sqlite:///{data['home'] / 'mlflow.db'}",
        validation_alias="MLFLOW_TRACKING_URI",
    )
    # A tracking server chooses artifact locations itself; a database URI needs one from us.
    mlflow_artifact_root: str | None = Field(
        default_factory=lambda data: (
            None if data["mlflow_tracking_uri"].startswith("http") else str(data["home"] / "mlartifacts")
        )
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CTLOOP_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"),
    )
    s3_connect_timeout_s: float = Field(
        default=S3_CONNECT_TIMEOUT_S, gt=0, description="Seconds to wait for an S3 connection, per attempt."
    )
    s3_read_timeout_s: float = Field(
        default=S3_READ_TIMEOUT_S,
        gt=0,
        description="Longest silence, in seconds, tolerated while waiting for or reading an S3 response.",
    )
    s3_max_attempts: int = Field(
        default=S3_MAX_ATTEMPTS, ge=1, description="Attempts per S3 call, the first included (1: no retry)."
    )
    # ctloop's own tables (the promotion ledger) and its locks; Postgres in production.
    database_url: str = Field(default_factory=lambda data: f"sqlite:///{data['home'] / 'ctloop.db'}")

    @field_validator("home")
    @classmethod
    def _absolute(cls, home: Path) -> Path:
        return home.expanduser().resolve()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then the environment; ctloop reads no .env or secrets files."""
        return init_settings, _Environment(settings_cls)


def known_variables() -> frozenset[str]:
    """Every ``CTLOOP_*`` name the environment may hold: the settings' and :data:`READ_ELSEWHERE`."""
    names = set(READ_ELSEWHERE)
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        aliases = alias.choices if isinstance(alias, AliasChoices) else [alias or f"{PREFIX}{name.upper()}"]
        names.update(str(choice) for choice in aliases if str(choice).startswith(PREFIX))
    return frozenset(names)


class _Environment(EnvSettingsSource):
    """The environment (``os.environ`` or a given mapping) that refuses unknown ``CTLOOP_*`` names."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        known = known_variables()
        for name in sorted(self._environ):
            if name.upper().startswith(PREFIX) and name.upper() not in known:
                close = difflib.get_close_matches(name.upper(), known, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise SettingsError(
                    f"unknown environment variable {name}{hint}: ctloop reads "
                    f"{', '.join(sorted(known))}; unset it or fix its name"
                )
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from ``environ`` (the process environment by default).

    Raises :class:`~ctloop.errors.SettingsError` naming any ``CTLOOP_*`` variable ctloop does not know.
    """
    if environ is None:
        return Settings()
    return Settings(_build_sources=((_Environment(Settings, environ),), {}))
