"""One settings object for the UI, the workers, the webhook and the tests.

Values come from the environment (prefix ``STUDIO_``; ``DATABASE_URL`` and ``REDIS_URL``
are accepted as-is too) or a ``.env`` file. Outside development mode the settings refuse
placeholder secrets, so a production deploy cannot start with the demo credentials.
"""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.infra.fernet_keys import parse_keys

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT / "var"

# Values that must never guard a non-development deployment.
PLACEHOLDER_SECRETS = frozenset({"", "changethis", "change-me", "secret", "dev-api-token", "dev-signing-key"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STUDIO_", env_file=".env", env_file_encoding="utf-8", extra="ignore",
        hide_input_in_errors=True,  # a refused setting's error must not print the other settings' secrets
    )

    # --- mode -------------------------------------------------------------------------
    env: Literal["development", "production"] = "development"

    # --- state --------------------------------------------------------------------------
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str = Field(
        default="", validation_alias=AliasChoices("STUDIO_DATABASE_URL", "DATABASE_URL")
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", validation_alias=AliasChoices("STUDIO_REDIS_URL", "REDIS_URL")
    )

    # --- object storage -----------------------------------------------------------------
    storage_backend: Literal["local", "s3"] = "local"
    storage_dir: Path | None = None  # local backend; defaults to <data_dir>/objects
    s3_endpoint: str = "127.0.0.1:9000"  # host:port, as the minio client wants it
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    s3_bucket: str = "influencerai"
    s3_access_key: SecretStr = SecretStr("")
    s3_secret_key: SecretStr = SecretStr("")

    # --- model manager (core/models_registry) -----------------------------------------------
    # huggingface_hub's own variables are honoured too, so one setting serves both.
    hub_endpoint: str = Field(default="https://huggingface.co",
                              validation_alias=AliasChoices("STUDIO_HUB_ENDPOINT", "HF_ENDPOINT"))
    hub_token: SecretStr = Field(default=SecretStr(""), validation_alias=AliasChoices("STUDIO_HUB_TOKEN", "HF_TOKEN"))
    model_download_max_gb: float = Field(default=80, gt=0)  # a hub download above this is refused before it starts

    # --- HTTP API and login -------------------------------------------------------------
    public_url: str = "http://127.0.0.1:8501"
    api_token: SecretStr = SecretStr("dev-api-token")
    signing_key: SecretStr = SecretStr("dev-signing-key")  # signs local download links
    max_request_bytes: int = 1_048_576
    # scrypt hash made by `python -m workers hash-password`; empty = no password set.
    ui_password_hash: str = ""
    auth_disabled: bool = False  # only honoured in development mode
    # A dashboard login ends after this long without an interaction, and after this long in any case.
    # Minutes may be fractional (a kiosk, or a test that watches a session expire).
    session_idle_minutes: float = Field(default=60, gt=0)
    session_max_hours: int = Field(default=12, ge=1)
    # This many failed logins from one client (IP address; one shared bucket when the server sees none)
    # lock it out for login_lockout_minutes after the last failure, across tabs and app processes.
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout_minutes: int = Field(default=15, ge=1)
    # Failed logins from all clients together within login_lockout_minutes; past this many, and for the
    # shared bucket past login_max_failures, each failure makes everyone wait longer before the next try
    # (1, 2, 4 … s up to login_delay_max_s) instead of locking the bucket, so a guesser cannot lock the owner
    # out of a shared address and many addresses together still guess slowly.
    login_global_free_failures: int = Field(default=20, ge=1)
    login_delay_max_s: int = Field(default=60, ge=1)
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (comma-separated IPs or networks, e.g.
    # "10.0.0.2,172.16.0.0/12"); empty = none: the client address is the TCP peer's. Every login limit and rate
    # limit keys on this address, so a client that could choose it could sidestep them.
    trusted_proxies: str = ""
    # Every route open without the API token is limited to this many requests a minute per client address.
    public_requests_per_minute: int = Field(default=120, ge=1)
    # Lifetime of download links (local signed links and S3 presigned URLs) shown in the UI or the API.
    download_link_minutes: int = Field(default=15, ge=1, le=7 * 24 * 60)

    # --- jobs and workers ---------------------------------------------------------------
    redis_namespace: str = "studio"
    worker_idle_poll_ms: int = 50  # Dramatiq's default 1 s poll makes pickup ~400 ms
    broker_heartbeat_timeout_ms: int = 5_000  # Dramatiq's default 60 s delays redelivery
    broker_maintenance_chance: int = 1_000_000  # of 1,000,000: clean up dead workers on each fetch
    job_heartbeat_s: float = 2.0
    job_lease_s: float = 8.0  # a running job whose heartbeat is older is presumed orphaned
    job_retry_backoff_s: float = 2.0
    job_retry_backoff_max_s: float = 300.0
    job_log_stream_maxlen: int = 2_000
    job_log_flush_s: float = Field(default=0.5, gt=0)  # job log lines reach the database in batches this often
    job_log_flush_lines: int = Field(default=200, ge=1)  # … or as soon as this many are waiting
    reconcile_interval_s: float = 5.0  # + the 8 s lease bounds the takeover of a job whose message Redis lost
    reconcile_grace_s: float = 10.0  # a queued job younger than this is left to the broker
    cpu_worker_threads: int = 4
    # Jobs sharing one GPU at a time; the GPU worker runs (GPUs × slots) threads. Raise it on a large
    # GPU (3 SD 1.5 trainings fit an H200) after checking the training page's VRAM estimate.
    gpu_slots_per_gpu: int = Field(default=1, ge=1, le=16)
    worker_queues: str = "gpu,cpu,default"
    # Model-aware routing (core/jobs/routing.py): a gpu job waits at most this long for a worker that
    # already holds its base model before any free worker runs it; 0 turns routing off.
    gpu_routing_wait_s: float = Field(default=10.0, ge=0, le=600)
    gpu_routing_retry_ms: int = Field(default=250, ge=10, le=10_000)  # each hand-back's delay

    # --- models (hub ids or local paths) ---------------------------------------------------
    # Real defaults for machines with network access; `scripts/run` points them at the tiny
    # models it builds (workers/ml/tiny_models.py) so the offline demo runs the same code.
    caption_model: str = "Salesforce/blip-image-captioning-large"
    caption_batch_size: int = 8
    # Face identity model (workers/ml/identity): embeddings are stored with this name and never compared
    # with another model's. "dlib-resnet-v1" runs offline from the face-recognition-models package.
    face_model: str = Field(default="dlib-resnet-v1", max_length=64)
    clip_tokenizer: str = ""  # hub id or folder with vocab.json + merges.txt; empty = bundled CLIP vocabulary
    device: str = ""  # "cuda", "cpu"; empty = cuda when available
    # Generation templates (workflows/generation/*.yaml); a file dropped here is a new template.
    templates_dir: Path = PROJECT_ROOT / "workflows" / "generation"
    generation_batch_size: int = Field(default=4, ge=1, le=64)  # images per GPU batch unless the template says
    generation_pipelines: int = Field(default=1, ge=1, le=8)  # base pipelines each worker process keeps loaded
    generation_dtype: Literal["", "fp32", "fp16", "bf16"] = ""  # on CUDA; empty = bf16 when supported, else fp16
    generation_compile: bool = False  # torch.compile the UNet (GPU benchmarks; recompiles when adapters change)
    # Image-to-video ("motion" jobs): a Wan 2.x image-to-video hub id or a local diffusers folder.
    motion_model: str = "Wan-AI/Wan2.2-TI2V-5B-Diffusers"
    # Voice-over and subtitles: a whisper size name ("base", "small"…), a path to a whisper `.pt`, or ""
    # for none (subtitles then follow the TTS sentence timings).
    whisper_model: str = "base"
    tts_vits_model: str = "facebook/mms-tts-eng"  # hub id or folder for "vits:" voices
    tts_default_voice: str = "espeak:en-us"  # "espeak:<voice>[+variant]", "vits:<model>" or "csm:<clip asset id>"
    # Where jobs that speak with a model voice (vits:, csm:) run: "auto" = the gpu queue while a worker with a GPU
    # is online, else the cpu queue; "gpu" / "cpu" force one. espeak voices always run on the cpu queue.
    tts_model_queue: Literal["auto", "gpu", "cpu"] = "auto"
    tts_csm_model: str = "sesame/csm-1b"  # hub id or folder for "csm:" voices (Sesame CSM, cloned from a clip)

    # The calendar's time zone (IANA name); times are stored in UTC and shown in this zone.
    timezone: str = "UTC"

    # --- content plans (any OpenAI-compatible chat endpoint: OpenRouter, Ollama, vLLM, LM Studio) --------
    llm_base_url: str = ""  # e.g. https://openrouter.ai/api/v1 or http://127.0.0.1:11434/v1; empty = offline planner
    llm_model: str = ""
    llm_api_key: SecretStr = SecretStr("")
    llm_timeout_s: float = Field(default=60.0, gt=0)
    llm_max_retries: int = Field(default=4, ge=0, le=10)  # on 429, 5xx and timeouts (Retry-After honoured)
    llm_retry_max_wait_s: float = Field(default=60.0, ge=0)  # a longer Retry-After fails the call instead
    # USD per million tokens, for the cost shown with each plan (0: unknown/free, e.g. a local model).
    llm_input_usd_per_mtok: float = Field(default=0.0, ge=0)
    llm_output_usd_per_mtok: float = Field(default=0.0, ge=0)
    llm_temperature: float = Field(default=0.7, ge=0, le=2)

    # --- social accounts and publishing --------------------------------------------------------------
    # Fernet key(s) that encrypt OAuth tokens at rest; several, comma-separated, rotate (the first
    # encrypts). Required outside development; in development a key is made once in data_dir.
    token_encryption_key: SecretStr = SecretStr("")
    meta_app_id: str = ""  # Facebook Login app: Facebook Pages and Instagram (Business/Creator)
    meta_app_secret: SecretStr = SecretStr("")
    google_client_id: str = ""  # YouTube
    google_client_secret: SecretStr = SecretStr("")
    # The Google app's OAuth consent screen is in "Testing": its refresh tokens die after 7 days
    # (https://developers.google.com/identity/protocols/oauth2#expiration); accounts warn ahead of it.
    google_consent_testing: bool = False
    tiktok_client_key: str = ""
    tiktok_client_secret: SecretStr = SecretStr("")
    # The TikTok app's platform in its developer console: "desktop" registers loopback redirects
    # (http://127.0.0.1:PORT/…, the default public_url) and expects a hex-encoded PKCE challenge;
    # "web" needs an https public_url (https://developers.tiktok.com/doc/login-kit-desktop/, …/login-kit-web).
    tiktok_app_type: Literal["desktop", "web"] = "desktop"
    # Has the TikTok app passed TikTok's audit? Until it has, Direct Post allows only SELF_ONLY posts, from
    # accounts set to private, by at most 5 users in 24 hours (https://developers.tiktok.com/doc/content-sharing-guidelines).
    tiktok_app_audited: bool = False
    # Platform endpoints; only tests (local fake servers) and proxies change them.
    facebook_dialog_url: str = "https://www.facebook.com/v21.0/dialog/oauth"
    graph_api_url: str = "https://graph.facebook.com/v21.0"
    facebook_upload_url: str = "https://rupload.facebook.com/video-upload/v21.0"
    google_auth_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    google_token_url: str = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL)
    youtube_api_url: str = "https://www.googleapis.com/youtube/v3"
    youtube_upload_url: str = "https://www.googleapis.com/upload/youtube/v3"
    tiktok_auth_url: str = "https://www.tiktok.com/v2/auth/authorize/"
    tiktok_api_url: str = "https://open.tiktokapis.com/v2"
    oauth_state_ttl_s: int = Field(default=600, ge=60)
    token_refresh_margin_s: int = Field(default=600, ge=0)  # refresh a token this long before it expires
    publish_dry_run: bool = False  # validate and record what would be sent; call no platform
    publish_http_timeout_s: float = Field(default=60.0, gt=0)
    publish_max_retries: int = Field(default=4, ge=0, le=10)  # per HTTP call, on 429/5xx/timeouts
    publish_status_poll_s: float = Field(default=3.0, ge=0)  # between status checks of a processing upload
    publish_status_timeout_s: float = Field(default=600.0, gt=0)
    publish_chunk_mb: int = Field(default=10, ge=5, le=64)  # TikTok and YouTube upload chunks
    scheduler_interval_s: float = Field(default=15.0, gt=0)  # how often due posts are handed to workers

    # --- pipelines and the webhook routes (n8n) --------------------------------------------------------------
    pipelines_max_running: int = Field(default=5, ge=1, le=100)  # more wait, highest priority first
    # Signs outbound notifications and checks inbound X-Studio-Signature (HMAC-SHA256 of "<timestamp>.<body>").
    webhook_secret: SecretStr = SecretStr("")
    webhook_require_signature: bool = False  # when on, pipeline starts without a valid signature get 401
    webhook_signature_window_s: int = Field(default=300, ge=10)  # timestamps older or newer are refused
    api_reads_per_minute: int = Field(default=600, ge=1)  # per client: polling every second stays well inside
    api_writes_per_minute: int = Field(default=60, ge=1)
    notify_timeout_s: float = Field(default=10.0, gt=0)

    # --- logs and metrics (issue 10) ----------------------------------------------------------------------
    log_level: str = "INFO"  # root level of the workers and the Streamlit server (DEBUG, INFO, WARNING…)
    # "text": the classic one-line format; "json": one JSON object per line (ts, level, logger, message,
    # job_id, pipeline_id, actor, exc) for a log shipper. Secrets are masked in both (core/infra/logging_setup.py).
    log_format: Literal["text", "json"] = "text"
    # A read-only token that GET /api/metrics accepts besides STUDIO_API_TOKEN, so a Prometheus scraper
    # need not hold the token that starts jobs; empty = only the API token.
    metrics_token: SecretStr = SecretStr("")
    # Runs Dramatiq's Prometheus middleware in the workers and serves its per-host metrics (messages,
    # errors, durations by queue and actor) on this port (0 = off). Worker processes on one host share
    # worker_metrics_dir; whichever binds the port first serves them all.
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    worker_metrics_host: str = "0.0.0.0"  # noqa: S104 (a scrape port; bind it to 127.0.0.1 to keep it local)
    worker_metrics_dir: Path | None = None  # prometheus_client multiprocess files; default <data_dir>/worker-metrics

    # --- datasets ------------------------------------------------------------------------------
    upload_max_file_mb: int = 25
    upload_max_pixels: int = 36_000_000  # far below Pillow's 89 M bomb limit
    upload_max_zip_mb: int = 200
    upload_max_zip_uncompressed_mb: int = 1024
    # Streamlit holds uploaded files in memory until the widget lets go of them or the session ends, so a
    # session and the server as a whole may hold only this much (one upload request is capped at the
    # larger of upload_max_file_mb and upload_max_zip_mb, the largest file a page accepts).
    upload_session_budget_mb: int = Field(default=400, ge=1)
    upload_total_budget_mb: int = Field(default=1024, ge=1)

    @model_validator(mode="after")
    def _signature_needs_a_secret(self) -> Settings:
        if self.webhook_require_signature and not self.webhook_secret.get_secret_value():
            raise ValueError("STUDIO_WEBHOOK_REQUIRE_SIGNATURE is on but STUDIO_WEBHOOK_SECRET is empty")
        return self

    @model_validator(mode="after")
    def _check_timezone(self) -> Settings:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"STUDIO_TIMEZONE: unknown time zone {self.timezone!r} (an IANA name such as "
                             "'Europe/Paris')") from None
        return self

    @model_validator(mode="after")
    def _check_token_encryption_key(self) -> Settings:
        if self.token_encryption_key.get_secret_value():
            try:
                parse_keys(self.token_encryption_key.get_secret_value())
            except ValueError as error:
                raise ValueError(f"STUDIO_TOKEN_ENCRYPTION_KEY: {error}") from None
        return self

    @model_validator(mode="after")
    def _refuse_placeholders_outside_development(self) -> Settings:
        if self.env == "development":
            return self
        problems = production_secret_problems(self)
        if problems:
            raise ValueError("refusing to start in production mode with weak, placeholder or missing secrets: "
                             + "; ".join(problems))
        return self

    @property
    def is_development(self) -> bool:
        return self.env == "development"

    @property
    def login_required(self) -> bool:
        return not (self.is_development and self.auth_disabled)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'studio.db'}"

    @property
    def effective_storage_dir(self) -> Path:
        return self.storage_dir or self.data_dir / "objects"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def upload_max_request_mb(self) -> int:
        """The largest file any page accepts: Streamlit's maxUploadSize (one upload request)."""
        return max(self.upload_max_file_mb, self.upload_max_zip_mb)

    @property
    def trusted_proxy_list(self) -> list[str]:
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]

    @property
    def queues(self) -> list[str]:
        return [q.strip() for q in self.worker_queues.split(",") if q.strip()]


# --- production secrets --------------------------------------------------------------------------------------

MIN_SECRET_LENGTH = 16
_MIN_DISTINCT_CHARACTERS = 8  # "aaaaaaaaaaaaaaaa", "abababab…", 16 spaces: long enough, guessable
_MIN_SCRYPT_N, _MIN_SCRYPT_R = 2**14, 8  # OWASP's scrypt floor


def weak_secret(value: str) -> str | None:
    """Why ``value`` cannot guard a production deployment, or None when it can."""
    if value.lower() in PLACEHOLDER_SECRETS or value.lower() in _KNOWN_DEFAULTS:
        return "a placeholder or a well-known default"
    if len(value) < MIN_SECRET_LENGTH:
        return f"shorter than {MIN_SECRET_LENGTH} characters"
    if not value.strip():
        return "blank"
    if len(set(value)) < _MIN_DISTINCT_CHARACTERS:
        return f"fewer than {_MIN_DISTINCT_CHARACTERS} distinct characters"
    if any(value == (value[:size] * (len(value) // size + 1))[:len(value)] for size in range(1, len(value) // 2 + 1)):
        return "a repeated pattern"
    return None


# Defaults of the services the studio talks to, which a copied example configuration would carry.
_KNOWN_DEFAULTS = frozenset({"minioadmin", "password", "admin", "changeme", "test", "example"})


def password_hash_problem(stored: str) -> str | None:
    """Why ``stored`` is not a hash made by ``python -m workers hash-password`` with strong scrypt costs."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return "not of the form scrypt$<n>$<r>$<p>$<salt>$<hash> (make one with `python -m workers hash-password`)"
    n, r, p = parts[1:4]
    if not all(x.isascii() and x.isdigit() for x in (n, r, p)):
        return "its scrypt parameters are not numbers"
    if int(n) < _MIN_SCRYPT_N or int(n) & (int(n) - 1) or int(r) < _MIN_SCRYPT_R or int(p) < 1:
        return f"its scrypt cost is below n={_MIN_SCRYPT_N}, r={_MIN_SCRYPT_R} (n a power of two)"
    try:
        salt, digest = (base64.urlsafe_b64decode(part.encode()) for part in parts[4:])
    except (ValueError, binascii.Error):
        return "its salt or hash is not base64"
    if len(salt) < 16 or len(digest) < 32:
        return "its salt or hash is too short"
    return None


def production_secret_problems(settings: Settings) -> list[str]:
    """Every reason the settings' secrets cannot run production, each naming its variable (never its value)."""
    tokens = {"api_token": settings.api_token, "signing_key": settings.signing_key,
              "metrics_token": settings.metrics_token, "webhook_secret": settings.webhook_secret}
    if settings.storage_backend == "s3":
        tokens["s3_secret_key"] = settings.s3_secret_key
    optional = {"metrics_token", "webhook_secret"}  # empty = the feature is off
    problems: list[str] = []
    for name, secret in tokens.items():
        value = secret.get_secret_value()
        if name in optional and not value:
            continue
        if why := weak_secret(value):
            problems.append(f"STUDIO_{name.upper()} is {why}")
    values = [s.get_secret_value() for s in tokens.values() if s.get_secret_value()]
    if len(values) != len(set(values)):
        problems.append("the tokens and keys (STUDIO_API_TOKEN, STUDIO_SIGNING_KEY, STUDIO_METRICS_TOKEN, "
                        "STUDIO_WEBHOOK_SECRET, STUDIO_S3_SECRET_KEY) must all differ")
    if not settings.token_encryption_key.get_secret_value():
        problems.append("STUDIO_TOKEN_ENCRYPTION_KEY is missing")
    if not settings.ui_password_hash:
        problems.append("STUDIO_UI_PASSWORD_HASH is missing")
    elif why := password_hash_problem(settings.ui_password_hash):
        problems.append(f"STUDIO_UI_PASSWORD_HASH: {why}")
    if settings.auth_disabled:
        problems.append("STUDIO_AUTH_DISABLED is only allowed when STUDIO_ENV=development")
    return problems


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reload_settings() -> Settings:
    """Forget the cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()
    return get_settings()
