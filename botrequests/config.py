"""Settings, read from the environment and `.env` (see `.env.example` for every one).

Every setting is checked here, when it is read: a bad one ends the command in one line
naming it (exit 2), never in a traceback from the library that would have used it.
"""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from botrequests import setting_checks as checks


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Empty: the embedded backend, kept in BOTREQUESTS_DATA_DIR. `mongomock://` selects it
    # in memory only (tests, demos): nothing is kept after exit.
    mongodb_uri: Annotated[str, AfterValidator(checks.mongodb_uri)] = ""
    mongodb_database: Annotated[str, AfterValidator(checks.database_name)] = "botrequests"
    # Short timeouts so an unreachable database turns into a quick 503, not a hung request.
    mongodb_timeout_ms: int = Field(default=3000, ge=100, le=120_000)

    # The thread lookup stops this many levels above or below a request.
    thread_max_depth: int = Field(default=1000, ge=1, le=100_000)
    # Most requests one thread answer carries (`?limit=` may ask for fewer); `next`
    # continues. Bounds the answer's size and the work of serving it.
    thread_max_members: int = Field(default=1000, ge=1, le=10_000)
    # A query the server has not finished in this time is stopped there (maxTimeMS) and
    # answered 504: a slow query is not an outage. Below the socket timeout on purpose.
    query_timeout_ms: int = Field(default=10_000, ge=100, le=600_000)
    page_default_limit: int = Field(default=50, ge=1, le=500)
    # Most items one POST /bot-requests/batch may carry (more: 413).
    batch_max_items: int = Field(default=1000, ge=1, le=100_000)

    # Where the embedded backend keeps its data (no MONGODB_URI): its SQLite database, its
    # lock and the development key. Empty: the user's data directory
    # (~/.local/share/botrequests on Linux).
    data_dir: str = Field(default="", validation_alias="BOTREQUESTS_DATA_DIR", max_length=4096)

    # Set by `botrequests serve --import`: files loaded into the embedded backend at start-up
    # (os.pathsep-separated).
    import_paths: str = Field(default="", validation_alias="BOTREQUESTS_IMPORT_PATHS")

    # Access control: "on" (default) or "off" (local use only). With it on, every data
    # call needs `Authorization: Bearer <key>`; the admin token manages organizations/keys.
    auth: Literal["on", "off"] = Field(default="on", validation_alias="BOTREQUESTS_AUTH")
    admin_token: str = Field(default="", validation_alias="BOTREQUESTS_ADMIN_TOKEN")
    # How long a worker trusts an API key it has looked up: a key revoked elsewhere stops
    # working within this many seconds (0: look it up on every call).
    key_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    # Hostile input: bodies over this many bytes get 413, JSON nested deeper gets 422.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    max_json_depth: int = Field(default=32, ge=4, le=90)

    # How often each worker tries the retention sweep (organizations' `retentionDays`);
    # one worker at a time runs it (a lease in the database). 0: never (`botrequests
    # purge` only).
    retention_sweep_seconds: float = Field(default=3600, ge=0, le=7 * 86_400)

    # Slow and numerous clients (`botrequests serve`; docs/security/hostile-input.md): a
    # request head must arrive within HEADER_TIMEOUT_SECONDS and MAX_HEADER_BYTES, its body within
    # BODY_TIMEOUT_SECONDS (else 408); an idle connection closes after KEEP_ALIVE_SECONDS;
    # past MAX_CONNECTIONS open connections, new requests get 503.
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    body_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    keep_alive_seconds: float = Field(default=5.0, ge=1, le=600)
    max_header_bytes: int = Field(default=64 * 1024, ge=4096, le=16 * 1024 * 1024)
    max_connections: int = Field(default=1000, ge=10, le=1_000_000)
    # Addresses (comma-separated, or *) of the proxies whose X-Forwarded-For /
    # X-Forwarded-Proto are trusted; empty (default): none, the peer's address is the client's.
    forwarded_allow_ips: Annotated[str, AfterValidator(checks.forwarded_allow_ips)] = Field(
        default="", max_length=4096
    )
    # Most exports one worker streams at once (more: 429 with Retry-After): each holds a
    # page of documents and a cursor.
    export_max_concurrent: int = Field(default=4, ge=1, le=1000)
    # OpenTelemetry ingestion (POST /v1/traces): a span's resource `service.name` names a
    # new bot only while its organization has fewer bots than this (past it, such spans
    # are refused in the export's partial success); most exports one worker decodes and
    # records at once (more: 429 with Retry-After, which exporters retry).
    otlp_max_bots: int = Field(default=100, ge=0, le=100_000)
    otlp_max_concurrent: int = Field(default=8, ge=1, le=1000)

    host: Annotated[str, AfterValidator(checks.host)] = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Any case; `trace` as uvicorn has it (below debug).
    log_level: Annotated[checks.LogLevel, BeforeValidator(checks.lower)] = "info"

    @property
    def auth_enabled(self) -> bool:
        return self.auth == "on"

    @property
    def embedded(self) -> bool:
        return not self.mongodb_uri or self.mongodb_uri.startswith("mongomock://")

    @property
    def durable(self) -> bool:
        """The embedded backend kept on disk (the default): no MONGODB_URI at all."""
        return not self.mongodb_uri

    @property
    def data_path(self) -> Path:
        from botrequests.storage import datadir

        return Path(self.data_dir).expanduser() if self.data_dir else datadir.default()


settings = Settings()
