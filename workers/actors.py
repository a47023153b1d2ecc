"""Thin actors: one per job kind, each takes a job id and runs its handler under the lifecycle.

Nothing happens on import: a worker process calls ``declare_actors`` with its broker, which also
hooks up the follow-up work that starts when a job finishes.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from core.automation import pipelines
from core.catalogue import get_spec
from core.jobs.kinds import Queue
from core.jobs.lifecycle import Handler, execute_job, get_job, on_job_finished
from core.jobs.routing import ModelRouter
from core.publishing import planning, posts, production
from core.video import scripts
from workers import generation, handlers, identity, lora_import, models, motion, notify, publish, training, video
from workers.gpu_slots import gpu_slots

HANDLERS: dict[str, Handler] = {
    "noop": handlers.noop,
    "sleep": handlers.sleep,
    "caption": handlers.caption,
    "train": training.train,
    "fingerprint": identity.fingerprint,
    "video": video.render,
    "voice-preview": video.voice_preview,
    "video-script": scripts.run_script,
    "generate": generation.generate,
    "motion": motion.animate,
    "import-lora": lora_import.import_lora,
    "install-model": models.install_model,
    "download-model": models.download_model,
    "plan": planning.run_plan,
    "publish": publish.publish,
    "notify": notify.deliver,
}


def _install_follow_ups() -> None:
    # Follow-up work starts when a job finishes, in the worker that ran it (nothing polls).
    # Order matters: production moves a post on before its pipeline looks at it.
    # Each listener names the jobs it cares about, so any other job ends without its queries.
    on_job_finished(production.production_job_finished, kinds=production.PRODUCTION_KINDS)
    on_job_finished(posts.publish_job_finished, kinds=[posts.PUBLISH_KIND])
    on_job_finished(pipelines.pipeline_job_finished, pipeline_jobs_only=True)


def _message_options() -> dict[str, Any]:
    message = CurrentMessage.get_current_message()
    return dict(message.options) if message is not None else {}


def make_actor(kind: str, handler: Handler, broker: dramatiq.Broker,
               router: ModelRouter | None = None) -> dramatiq.Actor:
    """The actor of one kind on ``broker``; a gpu kind first asks ``router`` whether a worker holding
    its model should run it instead (core/jobs/routing.py)."""
    # Redelivery of what fails outside the job follows core.jobs.retry, set once on the broker's Retries.
    spec = get_spec(kind)

    def run(job_id: str) -> None:
        # A routed kind (core.jobs.kinds.JobSpec.route) may sit on either queue: its row says which.
        queue = spec.queue if spec.route is None else get_job(job_id).queue
        if queue == Queue.GPU:
            if router is not None and router.hand_back(job_id, _message_options()):
                return  # handed back, still queued: a worker that holds the model takes it
            with gpu_slots().acquire():
                execute_job(job_id, handler)
        else:
            execute_job(job_id, handler)

    run.__name__ = kind.replace("-", "_")
    return dramatiq.actor(actor_name=kind, queue_name=spec.queue, broker=broker)(run)


def declare_actors(broker: dramatiq.Broker, router: ModelRouter | None = None) -> dict[str, dramatiq.Actor]:
    """Declare every kind's actor (and so its queue) on ``broker``; returns them by kind."""
    _install_follow_ups()
    return {kind: make_actor(kind, handler, broker, router) for kind, handler in HANDLERS.items()}
