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
    web_concurrency: int = Field(
        1,
        ge=1,
        description="worker processes for `bff run`, each on a listening socket of its own (SO_REUSEPORT)",
    )

    database_url: str = Field(
        "sqlite:///./bff.db", description="postgresql://… for Postgres; sqlite:///path for the embedded file"
    )
    db_pool_min: int = Field(2, ge=1, description="Postgres pool: connections opened at start")
    db_pool_max: int = Field(
        20,
        ge=1,
        description="Postgres pool: maximum connections (per worker: keep workers x this below max_connections)",
    )
    db_statement_timeout_ms: int = Field(
        5000, ge=0, description="Postgres statement_timeout for every connection (0 = off)"
    )

    redis_url: str | None = Field(
        None, description="redis://… enables the Redis broker; unset = in-process broker"
    )

    leaderboard_coalesce_ms: int = Field(
        200, ge=0, description="leaderboardUpdated pushes at most once per game per this many milliseconds"
    )
    presence_ttl_seconds: float = Field(
        30,
        gt=0,
        description="a roomPresence connection not refreshed for this long is offline (crashed instance)",
    )
    presence_heartbeat_seconds: float | None = Field(
        None,
        gt=0,
        description="how often presence entries are refreshed and expired ones swept (unset: TTL / 3)",
    )

    jwt_secret: SecretStr = Field(SecretStr(DEV_JWT_SECRET), description="HS256 signing secret")
    jwt_algorithm: Literal[
        "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512"
    ] = Field("HS256", description="the only algorithm accepted (HS* need JWT_SECRET, RS*/ES* JWT_JWKS_URL)")
    jwt_issuer: str = Field("bff", description="required `iss` claim")
    jwt_audience: str = Field("bff-mobile", description="required `aud` claim")
    jwt_leeway_seconds: int = Field(30, ge=0, description="clock skew allowed on exp/nbf/iat")
    jwt_user_id_claim: str = Field(
        "sub",
        min_length=1,
        description="claim holding the bff user id (a positive integer); for identity providers whose "
        "`sub` is opaque, a custom claim they add (`sub` is still required)",
    )
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
    compiled_execution: bool = Field(
        True,
        description="run queries through compiled plans (bff/compiled.py); false: graphql-core's executor",
    )
    graceful_shutdown_seconds: int = Field(20, ge=0, description="time in-flight requests get after SIGTERM")

    # WebSocket limits (bff/ws_limits.py); close codes in docs/decisions.md.
    ws_max_subscriptions_per_connection: int = Field(
        100, ge=1, description="operations one socket may run at once; more get an error message"
    )
    ws_max_connections_per_user: int = Field(
        20, ge=1, description="sockets one user may hold on one process; more are closed with 1008"
    )
    ws_max_message_bytes: int = Field(
        64 * 1024, ge=1024, description="largest frame a client may send; larger closes the socket with 1009"
    )
    ws_idle_timeout_seconds: float = Field(
        0,
        ge=0,
        description="close a socket that sent no frame (pings included) for this long with 4410; 0 = off",
    )
    ws_send_queue_size: int = Field(
        256, ge=1, description="frames queued for one socket; a client that lets it fill is closed with 1013"
    )

    # Query limits (bff/limits.py, bff/cost.py) and persisted operations (bff/persisted.py).
    max_root_fields: int = Field(30, ge=1, description="root fields per operation (through fragments)")
    max_directives: int = Field(50, ge=1, description="directives written in one document")
    max_cost: int = Field(
        5_000, ge=1, description="static cost per operation: 1 per field, lists times their page size"
    )
    introspection: bool | None = Field(
        None, description="allow __schema/__type (unset: on except in production); off also hides suggestions"
    )
    persisted_queries: bool = Field(True, description="automatic persisted queries (Apollo's APQ protocol)")
    persisted_query_cache_size: int = Field(
        1_000, ge=0, description="persisted documents kept in memory in front of Redis and the database"
    )
    persisted_query_ttl_seconds: int = Field(
        86_400, ge=1, description="lifetime of an automatic persisted query in Redis"
    )
    persisted_query_redis_prefix: str = Field(
        "bff:apq:", description="key prefix of persisted queries in Redis"
    )
    trusted_documents: bool = Field(
        False, description="run only operations registered with `bff register-operations` (production)"
    )

    # Production JWT (bff/jwks.py): public keys from the identity provider, refetched on an unknown `kid`.
    jwt_jwks_url: str | None = Field(
        None,
        description="https://…/jwks.json: verify RS*/ES* tokens with its keys; unset = HS* with JWT_SECRET",
    )
    jwt_jwks_cache_seconds: float = Field(
        300, gt=0, description="JWKS keys are refetched when older than this (stale keys serve if it fails)"
    )
    jwt_jwks_min_refetch_seconds: float = Field(
        10, ge=0, description="at most one JWKS fetch per this interval, whatever `kid`s tokens claim"
    )

    # The edge (bff/http_cache.py, compression.py, rate_limit.py, csrf.py, idempotency.py).
    compression_min_bytes: int = Field(
        1024, ge=0, description="smaller responses are sent uncompressed (br > gzip by Accept-Encoding)"
    )
    rate_limit_enabled: bool = Field(True, description="charge each operation's cost to a per-minute budget")
    rate_limit_per_minute_user: int = Field(
        30_000, ge=1, description="cost units a signed-in user may spend per minute (all instances together)"
    )
    rate_limit_per_minute_ip: int = Field(
        10_000, ge=1, description="cost units an anonymous client IP may spend per minute (all instances)"
    )
    trusted_proxies: str = Field(
        "",
        description="comma-separated proxy IPs/CIDRs whose X-Forwarded-For is believed (empty: the peer address)",
    )
    cors_allow_origins: str = Field(
        "", description="comma-separated origins allowed by CORS (empty: no CORS headers; `*` any origin)"
    )
    csrf_prevention: Literal["browser", "always", "off"] = Field(
        "browser",
        description="refuse preflight-free requests: `browser` when they carry Cookie/Origin/Sec-Fetch-Site, `always` (Apollo's rule)",
    )
    idempotency_ttl_seconds: int = Field(
        86_400, ge=60, description="how long a mutation's Idempotency-Key replays its first response"
    )
    request_timeout_ms: int = Field(
        10_000, ge=1, description="execution deadline per HTTP request; past it the answer is a TIMEOUT error"
    )
    ws_connection_init_timeout_seconds: float = Field(
        10, gt=0, description="a WebSocket that sends no connection_init for this long is closed with 4408"
    )

    # Read cache (bff/cache.py, bff/rankings.py): local LRU+TTL, then Redis when REDIS_URL is set.
    cache_enabled: bool = Field(
        True,
        description="cache users, like counts and leaderboard tops (false: every read goes to the database)",
    )
    cache_local_ttl_seconds: float = Field(
        30,
        gt=0,
        description="in-process cache entries expire after this (with Redis, one read within another TTL is "
        "answered while Redis revalidates it): twice this bounds staleness if an invalidation is lost",
    )
    cache_local_max_entries: int = Field(
        100_000, ge=0, description="entries kept in the in-process cache (LRU)"
    )
    cache_warm_on_start: bool = Field(
        True,
        description="with REDIS_URL, a starting instance copies the cached users and like counts from Redis "
        "into its in-process layer before it serves (up to 5 s)",
    )
    feed_cached_sources: bool = Field(
        False,
        description="merge Home's first feed page from cached followees and their newest posts: Postgres "
        "reads the page's rows by key instead of scanning every followee's posts, for more bff CPU per "
        "Home; for fleets whose shared Postgres is the limit (decision 49)",
    )
    cache_redis_ttl_seconds: int = Field(
        300,
        ge=1,
        description="Redis cache entries are rebuilt from the database after 80-100% of this (spread so a burst "
        "of fills does not expire together), leaderboard sets after all of it",
    )
    batch_max_operations: int = Field(
        0, ge=0, le=50, description="operations one batched POST (a JSON array) may hold; 0 = batching off"
    )

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Settings:
        if (
            self.bff_env == "production"
            and self.jwt_jwks_url is None
            and self.jwt_secret.get_secret_value() == DEV_JWT_SECRET
        ):
            raise ValueError("JWT_SECRET must be set in production (the development secret is public)")
        return self

    @model_validator(mode="after")
    def _jwt_keys_fit_algorithm(self) -> Settings:
        # HS* with a JWKS URL would invite HS/RS confusion (public key used as an HMAC secret).
        if self.jwt_jwks_url is not None and self.jwt_algorithm.startswith("HS"):
            raise ValueError("JWT_JWKS_URL needs an asymmetric JWT_ALGORITHM (RS256, ES256, …), not HS*")
        if self.jwt_jwks_url is None and not self.jwt_algorithm.startswith("HS"):
            raise ValueError(f"JWT_ALGORITHM={self.jwt_algorithm} needs JWT_JWKS_URL (its public keys)")
        return self

    @model_validator(mode="after")
    def _heartbeat_within_ttl(self) -> Settings:
        if self.presence_heartbeat_seconds is not None and (
            self.presence_heartbeat_seconds >= self.presence_ttl_seconds
        ):
            raise ValueError("PRESENCE_HEARTBEAT_SECONDS must be below PRESENCE_TTL_SECONDS")
        return self

    @property
    def presence_heartbeat(self) -> float:
        """Seconds between presence refreshes: the setting, or a third of the TTL."""
        return self.presence_heartbeat_seconds or self.presence_ttl_seconds / 3

    @property
    def is_development(self) -> bool:
        return self.bff_env != "production"

    @cached_property
    def dialect(self) -> Literal["postgresql", "sqlite"]:
        return "sqlite" if self.database_url.startswith("sqlite") else "postgresql"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (tests, CLI options)."""
    return Settings(**overrides)  # type: ignore[arg-type]
