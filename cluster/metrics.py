"""The product's own metrics, beside the ones Ray Serve exports for every deployment (requests,
latencies, replica counts). They are Serve metrics, so inside a replica they carry the deployment
and replica tags, and they appear on the same Prometheus endpoint (each node's metrics export
port) as Serve's.

Sections per second is `rate(framepack_sections_total[1m])`; video frames per second is
`rate(framepack_frames_total[1m])`.
"""

from __future__ import annotations

from ray.serve import metrics

#: Seconds from a session's start to its first frame; a live stream lives or dies by this.
_TTFF_BOUNDARIES = [0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120]


class SessionMetrics:
    """Recorded where a session lives (its `SessionHost` actor)."""

    def __init__(self) -> None:
        self.sections = metrics.Counter("framepack_sections_total", description="Sections delivered to sessions.")
        self.frames = metrics.Counter("framepack_frames_total", description="Video frames delivered to sessions.")
        self.time_to_first_frame = metrics.Histogram(
            "framepack_time_to_first_frame_seconds",
            description="From a session's start to its first decoded frame.",
            boundaries=_TTFF_BOUNDARIES,
        )


class RegistryMetrics:
    """Recorded where sessions are admitted (the `SessionRegistry` replica)."""

    def __init__(self) -> None:
        self.active_sessions = metrics.Gauge("framepack_active_sessions", description="Sessions generating now.")
        self.rejected = metrics.Counter(
            "framepack_busy_total", description="New sessions refused with `busy` (over the caps)."
        )


class DenoiserMetrics:
    """Recorded in each Denoiser replica: the queue in front of the GPU and how well it batches."""

    def __init__(self) -> None:
        self.queue_depth = metrics.Gauge(
            "framepack_denoiser_queue_depth", description="Sections waiting for or inside a denoiser forward."
        )
        self.batch_size = metrics.Histogram(
            "framepack_denoiser_batch_size",
            description="Sections denoised together in one batch.",
            boundaries=[1, 2, 3, 4, 6, 8, 12, 16],
        )
        self.section_seconds = metrics.Histogram(
            "framepack_denoiser_batch_seconds",
            description="Wall time of one batched section denoise.",
            boundaries=[0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64],
        )
