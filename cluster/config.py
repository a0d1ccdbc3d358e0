"""What the Serve application is built from: one frozen dataclass, filled from `serve` flags or from
the `args` of a Serve config file, so both ways of starting the app share one meaning per setting."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from framepack_live.engine.caching import CacheSpec
from framepack_live.engine.presets import LIVE_MODEL
from framepack_live.stream.access import normalize_origin, normalize_proxy
from framepack_live.stream.settings import Limits, check_ice_server

Device = Literal["cpu", "cuda"]


@dataclass(frozen=True)
class ClusterConfig:
    """Settings of the application (replica counts and autoscaling are Serve's own options).

    `sequence_parallel` is how many devices one Denoiser replica spans: it reserves one
    placement-group bundle per rank, so the ranks are scheduled together or not at all.
    """

    #: Preset name, local pipeline directory or hub id; by default the shipped toyworld-fast
    #: (`engine.presets.LIVE_MODEL`), on CPU.
    model: str = LIVE_MODEL
    device: Device = "cpu"
    sequence_parallel: int = 1
    #: Sessions the ingress accepts at once; one more gets `busy` instead of a growing queue.
    max_sessions: int = 8
    #: Of those, how many one client address may run.
    max_sessions_per_client: int = 2
    #: Sections from different sessions that share one denoiser forward pass.
    max_batch_size: int = 4
    #: How long a section that finds the Denoiser idle waits for company. 0 by default: the
    #: sections that come while a batch runs are batched together when it ends anyway, and a wait
    #: would hold up every lone session's sections (20 ms was a tenth of the toy model's section on
    #: a CPU, and on the way to its first frame); the GPU configs wait 20 ms beside seconds.
    batch_wait_timeout_s: float = 0.0
    #: Denoiser requests queued per caller beyond those running; more get `busy`.
    max_queued_sections: int = 32
    #: Encoded prompts kept per Encoder replica (steering often returns to earlier prompts).
    prompt_cache_size: int = 64
    #: Start images whose encodings (before the seeded draw) an Encoder replica keeps.
    image_cache_size: int = 16
    #: Torch threads per replica process; 1 keeps replicas on a shared host from fighting.
    torch_threads: int = 1
    #: `GenerationSettings` fields of every session's defaults; a `start` message may override
    #: width, height, steps, guidance, seed and sections.
    generation: dict[str, Any] = field(default_factory=dict)
    #: `torch.compile` the transformer and the small live decoder in every replica (a first section
    #: that compiles, faster ones after; `framepack-live bench realtime` measures what it gains).
    compile: bool = False
    #: Step cache on the Denoiser's transformer (`engine.caching.CacheSpec`, e.g. `first-block:0.1`,
    #: or `none`); None: the model's own default.
    cache: str | None = None
    #: Keep 1/N of the transformer's block weights on each of the N sequence-parallel ranks,
    #: gathered block by block as they run (`engine.parallel.shard_weights`): the 13 B model on
    #: GPUs that cannot hold all of it. Costs one all-gather of the block weights per step.
    shard_weights: bool = False
    #: CPUs each Denoiser rank reserves. Other stages reserve none on CPU: they are light and the
    #: Denoiser must still fit on a small machine next to them.
    cpus_per_rank: float = 1.0
    #: Whether a steer restarts the section being denoised when at most half of it is done
    #: (`stream.backend.worth_restarting`), rather than waiting for the next section boundary.
    restart_steered: bool = True
    #: How far a session's video may run ahead of a viewer playing it in real time, in sections
    #: (`stream.settings.Limits.live_lead_sections`): a model faster than real time then waits
    #: instead of piling up video a steer would have to play out. None: as fast as the model goes.
    live_lead_sections: float | None = Limits.live_lead_sections
    #: Session actors kept started ahead (`session_registry`): that many `start`s in a row answer
    #: at once instead of waiting seconds for a process; each costs an idle process on the
    #: registry's node. 0: every session starts its own.
    spare_sessions: int = 2
    #: Where sessions keep their frames (a directory per session, on the registry's node); None:
    #: the system's temporary directory.
    session_dir: str | None = None
    #: Where render jobs keep their state and MP4s (`stream.jobs`, on the `RenderQueue`'s node):
    #: unfinished jobs run again after a restart from what is there. None: `jobs` beside
    #: `session_dir`'s directory (the system's temporary directory by default, which a reboot
    #: may empty: set a lasting one for jobs that must survive it).
    jobs_dir: str | None = None
    #: STUN/TURN servers for WebRTC, as browsers take them: `{urls, username, credential}`. The
    #: Ingress's peers use them and the page gets them from `GET /config`.
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    #: Addresses or CIDR networks of the load balancers / reverse proxies in front of the HTTP
    #: proxy: behind them the per-client session cap counts the `X-Forwarded-For` client.
    trusted_proxies: list[str] = field(default_factory=list)
    #: Origins (`https://host[:port]`) whose pages may use the server besides its own; `*`: any.
    allowed_origins: list[str] = field(default_factory=list)
    #: A file of API keys, one per line, read when the application is built (on the node that
    #: builds it: the head, for `serve deploy`); set: a `start` needs one of them.
    api_keys_file: str | None = None
    #: A directory of LoRAs sessions may choose from (`engine.lora.list_loras`: diffusers' LoRA
    #: directories and `.safetensors` files, each with an optional card), listed when the
    #: application is built. The Denoiser replicas load them from the same path, so on a
    #: multi-node cluster it must be on every node (a shared or copied directory).
    lora_dir: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.device not in ("cpu", "cuda"):
            problems.append(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.sequence_parallel < 1:
            problems.append(f"sequence_parallel must be >= 1, got {self.sequence_parallel}")
        if self.max_sessions < 1:
            problems.append(f"max_sessions must be >= 1, got {self.max_sessions}")
        if self.max_batch_size < 1:
            problems.append(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.batch_wait_timeout_s < 0:
            problems.append(f"batch_wait_timeout_s must be >= 0, got {self.batch_wait_timeout_s}")
        if self.shard_weights and self.sequence_parallel < 2:
            problems.append("shard_weights needs sequence_parallel >= 2 (the weights are split over its ranks)")
        if self.torch_threads < 1:
            problems.append(f"torch_threads must be >= 1, got {self.torch_threads}")
        for check, values in ((CacheSpec.parse, [self.cache]), (check_ice_server, self.ice_servers),
                              (normalize_proxy, self.trusted_proxies), (normalize_origin, self.allowed_origins)):
            for value in values:
                try:
                    check(value)
                except (ValueError, TypeError, AttributeError) as exc:
                    problems.append(str(exc))
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_args(cls, args: dict[str, Any] | None) -> "ClusterConfig":
        """Build from a Serve config's `args`; unknown keys are an error, not silently ignored."""
        args = dict(args or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(f"unknown application args {unknown}; known: {sorted(known)}")
        return cls(**args)

    def to_args(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def rank_bundle(self) -> dict[str, float]:
        """The resources of one sequence-parallel rank."""
        bundle = {"CPU": self.cpus_per_rank}
        if self.device == "cuda":
            bundle["GPU"] = 1.0
        return bundle
