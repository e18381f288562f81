"""Settings: the only place that reads the environment.

Defaults are the embedded mode (`make run`): a SQLite file, an in-process broker,
a development JWT secret. Production refuses the placeholder secret.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "bff-development-secret-do-not-use-in-production"


class Settings(BaseSettings):
    """Every setting of the BFF, read from environment variables (names in upper case)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    bff_env: Literal["development", "test", "production"] = Field(
        "development",
        description="development keeps introspection and detailed errors; production refuses placeholder secrets",
    )
    host: str = Field("127.0.0.1", description="interface `bff run` binds")
    port: int = Field(8000, description="port `bff run` binds")
    web_concurrency: int = Field(1, ge=1, description="uvicorn worker processes for `bff run`")

    database_url: str = Field(
        "sqlite:///./bff.db", description="postgresql://… for Postgres; sqlite:///path for the embedded file"
    )
    db_pool_min: int = Field(2, ge=1, description="Postgres pool: connections opened at start")
    db_pool_max: int = Field(10, ge=1, description="Postgres pool: maximum connections")
    db_statement_timeout_ms: int = Field(
        5000, ge=0, description="Postgres statement_timeout for every connection (0 = off)"
    )

    redis_url: str | None = Field(
        None, description="redis://… enables the Redis broker; unset = in-process broker"
    )

    jwt_secret: SecretStr = Field(SecretStr(DEV_JWT_SECRET), description="HS256 signing secret")
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = Field(
        "HS256", description="the only algorithm accepted"
    )
    jwt_issuer: str = Field("bff", description="required `iss` claim")
    jwt_audience: str = Field("bff-mobile", description="required `aud` claim")
    jwt_leeway_seconds: int = Field(30, ge=0, description="clock skew allowed on exp/nbf/iat")
    jwt_ttl_seconds: int = Field(3600, ge=60, description="lifetime of tokens made by `bff token`")

    max_body_bytes: int = Field(512 * 1024, ge=1024, description="request bodies above this get 413")
    max_document_chars: int = Field(20_000, ge=100, description="GraphQL documents above this are refused")
    max_tokens: int = Field(3_000, ge=50, description="lexer tokens per document")
    max_depth: int = Field(12, ge=2, description="selection depth per operation")
    max_aliases: int = Field(30, ge=1, description="aliases per operation")
    max_page_size: int = Field(100, ge=1, description="largest `first`/`last` a connection accepts")
    max_message_chars: int = Field(4_000, ge=1, description="longest chat message body")

    document_cache_size: int = Field(512, ge=0, description="parsed and validated documents kept in memory")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING, ERROR")
    log_json: bool = Field(True, description="JSON log lines (false: human-readable console)")
    sentry_dsn: str | None = Field(None, description="switches sentry-sdk on")
    sentry_traces_sample_rate: float = Field(
        0.0, ge=0.0, le=1.0, description="share of requests traced in Sentry"
    )
    graceful_shutdown_seconds: int = Field(20, ge=0, description="time in-flight requests get after SIGTERM")

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Settings:
        if self.bff_env == "production" and self.jwt_secret.get_secret_value() == DEV_JWT_SECRET:
            raise ValueError("JWT_SECRET must be set in production (the development secret is public)")
        return self

    @property
    def is_development(self) -> bool:
        return self.bff_env != "production"

    @cached_property
    def dialect(self) -> Literal["postgresql", "sqlite"]:
        return "sqlite" if self.database_url.startswith("sqlite") else "postgresql"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (tests, CLI options)."""
    return Settings(**overrides)  # type: ignore[arg-type]
