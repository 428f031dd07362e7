"""Settings shared by the bot and the worker (pydantic-settings, ``PROOFROOM_`` env prefix).

``REDIS_URL`` is read without the prefix because every Redis tool uses that name.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.redaction import redacted_repr_args

REPO_ROOT = Path(__file__).resolve().parent.parent

# How an input image whose shape differs from the job's is fitted: "crop" (cover and cut the
# overflow, like a photo print) or "pad" (fit whole, letterboxed). Used by ``engine.inputs``
# and ``engine.spec`` too; defined here because both import this module.
Fit = Literal["crop", "pad"]

# Settings that are URLs, which may carry a password: shown redacted in a repr.
URL_FIELDS = frozenset({"redis_url", "s3_endpoint_url", "s3_public_endpoint_url"})


class Limits(BaseModel):
    """What one job may ask for. Exceeding a limit is a user error, never a clamp."""

    min_steps: int = 1
    max_steps: int = 60
    min_cfg: float = 1.0
    max_cfg: float = 30.0
    min_side: int = 64
    max_side: int = 2048
    max_pixels: int = 1536 * 1536
    max_count: int = 8
    max_prompt_chars: int = 2000
    # Attached images (init, mask, control) are decoded only below this many pixels:
    # a phone photo passes, a decompression bomb does not.
    max_input_pixels: int = 4096 * 4096
    # An upscale's output (``/imagine upscale``, the \u2b06\ufe0f reaction): beyond the job limits
    # above, since its tiled pass keeps memory bounded by the tile, not the output.
    max_upscale_pixels: int = 4096 * 4096


class QaThresholds(BaseModel):
    """Where an image's QA scores (``engine.qa.scores``, on a 0-255 grayscale scaled to fit
    512 px) get it flagged; a template's ``qa:`` block overrides any of them. A check is off
    at 0 (``min_*``), 255 (``max_brightness``) or -1 (``duplicate_distance``). The defaults
    flag only clearly broken images: raise ``min_sharpness`` (100 is the common rule of
    thumb for photos) where soft backgrounds are not wanted."""

    model_config = ConfigDict(extra="forbid")

    min_sharpness: float = Field(default=30.0, ge=0)  # variance of the Laplacian
    min_brightness: float = Field(default=20.0, ge=0, le=255)  # mean: too dark below
    max_brightness: float = Field(default=240.0, ge=0, le=255)  # mean: too bright above
    min_contrast: float = Field(default=10.0, ge=0)  # standard deviation: flat below
    blank_contrast: float = Field(default=2.0, ge=0)  # standard deviation: one colour below
    duplicate_distance: int = Field(default=4, ge=-1, le=64)  # pHash bits: a near-duplicate
    nsfw_threshold: float = Field(default=0.8, ge=0, le=1)  # classifier score: flagged above


class QaSettings(QaThresholds):
    """Automated QA on the worker (``engine.qa``): the global thresholds, what happens to a
    flagged image, and the optional NSFW classifier."""

    enabled: bool = True
    # "flag": posted with its reasons under it; "rerender": rendered once more with a new
    # seed first (at most one extra render per image; still flagged: posted flagged).
    policy: Literal["flag", "rerender"] = "flag"
    # A local folder of image-classification weights (transformers' pipeline, e.g. a copy of
    # Falconsai/nsfw_image_detection); unset: no NSFW check. Never downloaded.
    nsfw_model: Path | None = None
    nsfw_label: str = "nsfw"  # the classifier's label that counts


class Settings(BaseSettings):
    """Process settings; see ``.env.example`` for every variable. Its ``repr`` hides the
    password of ``REDIS_URL`` (``engine.redaction``), and a validation error never quotes
    the values it was given (a bad variable beside ``REDIS_URL`` would show it)."""

    model_config = SettingsConfigDict(
        env_prefix="PROOFROOM_",
        env_file=".env",
        env_nested_delimiter="__",
        extra="ignore",
        hide_input_in_errors=True,
    )

    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "PROOFROOM_REDIS_URL")
    )
    # Without REDIS_URL the chat processes keep their state in a redis-server of their own
    # under <data_dir>/redis (engine.private_redis): this binary, a name looked up on PATH
    # or a path; "off": in memory, nothing survives a restart.
    redis_server: str = "redis-server"
    key_prefix: str = "proofroom"
    templates_dir: Path = REPO_ROOT / "templates"
    data_dir: Path = Path("data")
    # Drop-in folders (``engine.model_folders``): every file in them is in the catalog under
    # its slugged file name, its family read from its tensors. ``a1111_dir``: an existing
    # AUTOMATIC1111 install whose models/Stable-diffusion, models/Lora, embeddings and
    # models/VAE are used in place, in addition to these.
    model_dir: Path = Path("models")
    lora_dir: Path = Path("loras")
    embedding_dir: Path = Path("embeddings")
    vae_dir: Path = Path("vaes")
    a1111_dir: Path | None = None
    allow_pickle: bool = False  # use pickled (.ckpt/.pt) models, LoRAs, VAEs: they can run code
    model_cache_dir: Path = Path(".proofroom/models")
    default_model: str = "tiny"
    limits: Limits = Limits()
    qa: QaSettings = QaSettings()  # PROOFROOM_QA__MIN_SHARPNESS, PROOFROOM_QA__POLICY...
    # Memory budget of the warm pipeline cache (bytes of parameters); LRU beyond it.
    pipeline_cache_bytes: int = 24 * 1024**3
    device: str | None = None  # None: cuda when available, else cpu
    # How pipelines run on a GPU (engine.gpu); only VAE tiling applies on a CPU too.
    # fp16, or bf16 (fp32's range: no overflow; needs compute capability 8.0 or later).
    cuda_dtype: Literal["fp16", "bf16"] = "fp16"
    # For GPUs smaller than the model: "model" keeps each module in CPU memory until it
    # runs (a little slower), "sequential" each layer (much slower, least GPU memory).
    cpu_offload: Literal["none", "model", "sequential"] = "none"
    # torch.compile the UNet at load (a warm-up render; minutes per model): faster steps
    # for long-running workers, recompiles on new sizes, samplers and LoRA sets.
    compile_unet: bool = False
    # Decode a batch one image at a time on CUDA: one image's VAE memory, same arithmetic.
    vae_slicing: bool = True
    # A call of images larger than this (width x height) runs the VAE in tiles of its own
    # size, blended at the seams; 0: never. The default leaves SDXL's sizes whole.
    vae_tile_pixels: int = Field(default=1024 * 1024, ge=0)
    job_timeout_s: int = 900
    job_retries: int = 1
    result_ttl_s: int = 7 * 24 * 3600
    event_stream_maxlen: int = 10_000
    # A reader of job events takes over the entries another reader of its group read but
    # left unacknowledged this long ago (a bot renamed, or one of two replicas gone), so
    # no job's result is stranded under a consumer name nobody uses any more.
    event_claim_idle_s: float = Field(default=60.0, ge=0)
    # A job for a worker pool (engine.pools) that no worker has served for this long is
    # refused at once, naming its model; within it, it is queued and waits. Counted from the
    # bot's start too, so a bot started before its workers refuses nothing. Longer than a
    # heartbeat's TTL plus a worker's restart (model load included).
    pool_grace_s: float = Field(default=300.0, ge=0)
    progress_interval_s: float = 0.25
    # LoRA adapters kept loaded per pipeline; beyond it the least recently used is deleted.
    lora_adapter_cap: int = Field(default=8, ge=1)
    input_fit: Fit = "crop"  # how an input of another shape is fitted (see Fit)
    # Jobs waiting in the queues that can share a job's forward pass ride along in its
    # pipeline call (engine.merging); off: every job gets calls of its own.
    micro_batching: bool = True
    # Where images and attached inputs live (engine.store): "local", files under
    # <data_dir>/artifacts (one host, or a volume every host mounts); "s3", a bucket of an
    # S3-compatible store (AWS S3, MinIO, R2) that every host reaches. Credentials: boto3's
    # chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance role).
    store: Literal["local", "s3"] = "local"
    s3_bucket: str = ""
    s3_prefix: str = ""  # keys <prefix><yyyy-mm-dd>/<id>: one bucket for several deployments
    s3_endpoint_url: str | None = None  # MinIO, R2...; None: AWS
    s3_public_endpoint_url: str | None = None  # the host signed URLs name, when it differs
    s3_region: str | None = None
    # `proofroom store prune` removes artifacts older than this many days, except approved
    # images and what they need to be rendered again; 0 keeps everything.
    retention_days: int = Field(default=0, ge=0)
    # How long a signed download URL of an S3 artifact works (at most a week).
    signed_url_expires_s: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    # Port of a worker's Prometheus endpoint (render seconds, engine/metrics.py); None: off.
    # `proofroom worker --metrics-port` overrides it.
    worker_metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # The usage ledger (engine.ledger): each job's record is kept this many days, far past
    # result_ttl_s, so `proofroom usage` can sum up months.
    ledger_days: int = Field(default=400, ge=1)
    ledger_ttl_s: int | None = Field(default=None, ge=1)  # seconds; set, wins over ledger_days
    # What one hour of the GPU costs here (power plus hardware amortised; the README works it
    # out from the lesson's figures) and what one image costs from a cloud API, in `currency`.
    gpu_hour_cost: float = Field(default=0.08, ge=0)
    cloud_price_per_image: float = Field(default=0.007, ge=0)
    currency: str = "$"

    def __repr_args__(self) -> list[tuple[str | None, Any]]:
        return redacted_repr_args(super().__repr_args__(), url_fields=URL_FIELDS)

    @property
    def ledger_retention_s(self) -> int:
        """Seconds a job's usage record is kept (``ledger_ttl_s``, else ``ledger_days``)."""
        return self.ledger_ttl_s or self.ledger_days * 24 * 3600

    @property
    def artifacts_dir(self) -> Path:
        """Where the local artifact store keeps files."""
        return self.data_dir / "artifacts"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment and ``.env``."""
    return Settings()
