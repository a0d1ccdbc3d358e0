"""The `RenderQueue` deployment: `stream.jobs.JobQueue` on the cluster's stages.

One replica, on the head node in the shipped configs (the jobs directory is on its disk): the
queue is a record of jobs and one running section loop, which is what a replica is for. Its jobs'
stage requests are marked as background work, so the Denoiser serves live sessions' sections
first (`priority.LiveFirst`). When Serve replaces the replica, or the application is deployed
again, the new replica reads the directory and runs the unfinished jobs again from their start.
"""

from __future__ import annotations

from ray import serve

from framepack_live.stream.jobs import JobQueue
from framepack_live.stream.settings import StreamSettings

from .backend import RayBackend, Stages
from .metrics import SessionMetrics


@serve.deployment(name="RenderQueue", num_replicas=1, ray_actor_options={"num_cpus": 0})
class RenderQueue(JobQueue):
    """The handle's methods are `JobQueue`'s (`stream.handle.JobDirectory`)."""

    async def __init__(self, encoder, denoiser, decoder, stream: StreamSettings) -> None:
        stages, metrics = Stages(encoder, denoiser, decoder), SessionMetrics()
        super().__init__(lambda job_id: RayBackend(stages, f"job-{job_id}", metrics, background=True), stream)
        self.start()  # on the replica's event loop: the jobs a restart left run at once
