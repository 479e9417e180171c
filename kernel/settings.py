"""Settings have one home: EMOFLOW_* environment variables (or a .env file), with sane defaults."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, TypeAlias

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Engine names, per job option. tasks/engines.py maps each to its class; a test keeps the two in step.
PlannerName: TypeAlias = Literal["rules", "llm"]
TtsEngineName: TypeAlias = Literal["piper", "espeak", "espeak-env", "parler-env"]  # -env: in its own venv
AlignerName: TypeAlias = Literal["engine", "dtw"]
EfpEngineName: TypeAlias = Literal["embedded", "learned"]
RendererName: TypeAlias = Literal["preview", "diffusion"]
# how the published speech is encoded (models/publish/audio.py)
SpeechFormat: TypeAlias = Literal["wav", "mp3", "m4a"]
TaskRunnerName: TypeAlias = Literal["threads", "dask"]  # how batches run jobs at once (flows/batch.py)
# the published speech's integrated loudness target, LUFS: from quiet broadcast (-40) to loud streaming (-9)
MIN_SPEECH_LOUDNESS, MAX_SPEECH_LOUDNESS = -40.0, -9.0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMOFLOW_", env_file=".env", extra="ignore")

    home: Path = Field(default=Path("~/.emoflow"), description="Root of the store, blobs and Prefect state")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite under home")
    blob_root: str | None = Field(default=None, description="Blob directory; default home/blobs")
    output_dir: Path = Field(default=Path("outputs"), description="Where published files are exported")

    inspector_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Where `emoflow serve` is reached; run summaries link to it",
    )

    planner: PlannerName = "rules"
    planner_model: str | None = None  # instruct LM for the "llm" planner: a local directory or a hub id
    tts_engine: TtsEngineName = "piper"
    aligner: AlignerName = "engine"
    efp_engine: EfpEngineName = "embedded"
    efp_model: str | None = Field(
        default=None,
        description="Learned EFP model: a name or sha256 in the store (python -m flows.train_efp), or a file",
    )
    renderer: RendererName = "preview"
    fast_path: bool = Field(
        default=True,
        description="Narrate a job whose every step is in the store from the store alone (no flow, no "
        "engines; the run is still recorded in Prefect); false: always run the flow",
    )
    prefect_server: Literal["shared", "ephemeral"] = Field(
        default="shared",
        description="shared: one local Prefect server per EMOFLOW_HOME, kept between commands "
        "(`emoflow server stop` ends it); ephemeral: Prefect's own server inside every process",
    )

    diffusion_weights: str | None = Field(
        default=None,
        description="Diffusion renderer weights: a folder laid out as Hallo's pretrained_models/",
    )
    diffusion_steps: int = Field(default=40, ge=1, le=200)
    diffusion_guidance: float = Field(default=3.5, ge=1.0, le=20.0)
    device: str = Field(default="cpu", description="torch device for neural engines, e.g. cuda")
    parler_model: Path | None = Field(
        default=None,
        description="Parler-TTS checkpoint folder for tts_engine parler-env (never downloaded at run time)",
    )
    parler_descriptions: Path | None = Field(
        default=None,
        description="Description table for another Parler-TTS checkpoint (default prompts/parler.yaml)",
    )

    fps: int = Field(default=25, ge=1, le=60)
    size: int = Field(default=512, ge=64, le=2048)
    seed: int = 0
    speech_loudness: float = Field(
        default=-16.0,
        ge=MIN_SPEECH_LOUDNESS,
        le=MAX_SPEECH_LOUDNESS,
        description="Integrated loudness (LUFS) the published speech and video are normalised to; "
        "true peak stays at or under -1 dBTP",
    )
    speech_format: SpeechFormat = Field(default="wav", description="Published speech file: wav, mp3 or m4a")
    task_retries: int = Field(default=2, ge=0, le=10)
    host_name: str | None = Field(
        default=None, description="This machine's name in job leases and the audit trail (default: hostname)"
    )
    lease_seconds: float = Field(
        default=60.0,
        ge=1.0,
        le=3600.0,
        description="How long a claimed or running job stays held unless its worker renews it "
        "(every third of this); an expired job goes back to the queue and its run is marked abandoned",
    )
    render_start_seconds: float = Field(
        default=300.0,
        ge=1.0,
        le=86400.0,
        description="How long a routed render may stay Pending (its GPU worker starting the process, "
        "pulling an image) before the waiting narration counts that worker dead and sends it again",
    )
    render_deployment: str = Field(
        default="",
        description="Prefect deployment (flow/deployment, e.g. render-stage/gpu) that renders this worker's "
        "jobs of EMOFLOW_ROUTED_RENDERERS; empty: render here",
    )
    routed_renderers: str = Field(
        default="diffusion", description="Comma-separated renderers sent to EMOFLOW_RENDER_DEPLOYMENT"
    )
    render_tags: str = Field(
        default="",
        description="Comma-separated Prefect tags for render tasks (e.g. render,gpu), for concurrency limits",
    )
    task_runner: TaskRunnerName = Field(
        default="threads", description="How batches run jobs at once: a thread pool or a local Dask cluster"
    )
    workers: int = Field(default=2, ge=1, le=64, description="Jobs a batch narrates at once")
    engine_threads: int | None = Field(
        default=None, ge=1, le=256, description="Threads each job's engines use; default cores // workers"
    )
    engines_dir: Path | None = Field(
        default=None, description="Where `emoflow engines install` builds environments; default home/engines"
    )
    engine_timeout: float = Field(
        default=120.0,
        gt=0,
        le=86400,
        description="Seconds an engine environment's process may be silent in a request before it is killed",
    )

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home_dir / 'emoflow.db'}"

    @property
    def resolved_blob_root(self) -> str:
        return self.blob_root or str(self.home_dir / "blobs")

    @property
    def prefect_home(self) -> Path:
        return self.home_dir / "prefect"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
