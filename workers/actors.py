"""Thin actors: one per job kind, each takes a job id and runs its handler under the lifecycle."""

from __future__ import annotations

import dramatiq
import redis
from sqlalchemy.exc import OperationalError

from core.automation import pipelines
from core.errors import is_transient
from core.jobs.kinds import Queue, get_spec
from core.jobs.lifecycle import Handler, execute_job, on_job_finished
from core.publishing import planning, posts, production
from workers import generation, handlers, notify, publish, training, video
from workers.broker import broker
from workers.gpu_slots import gpu_slots

HANDLERS: dict[str, Handler] = {
    "noop": handlers.noop,
    "sleep": handlers.sleep,
    "caption": handlers.caption,
    "train": training.train,
    "video": video.render,
    "voice-preview": video.voice_preview,
    "generate": generation.generate,
    "plan": planning.run_plan,
    "publish": publish.publish,
    "notify": notify.deliver,
}

# Follow-up work starts when a job finishes, in the worker that ran it (nothing polls).
# Order matters: production moves a post on before its pipeline looks at it.
on_job_finished(production.production_job_finished)
on_job_finished(posts.publish_job_finished)
on_job_finished(pipelines.pipeline_job_finished)


def _retry_outside_the_job(retries: int, error: BaseException) -> bool:
    """Retries for what failed before a job could record it itself (database or Redis down)."""
    infrastructure = is_transient(error) or isinstance(error, OperationalError | redis.RedisError)
    return retries < 10 and infrastructure


def _make_actor(kind: str, handler: Handler) -> dramatiq.Actor:
    spec = get_spec(kind)

    def run(job_id: str) -> None:
        if spec.queue == Queue.GPU:
            with gpu_slots().acquire():
                execute_job(job_id, handler)
        else:
            execute_job(job_id, handler)

    run.__name__ = kind.replace("-", "_")
    return dramatiq.actor(
        run, actor_name=kind, queue_name=spec.queue, broker=broker, retry_when=_retry_outside_the_job
    )


ACTORS: dict[str, dramatiq.Actor] = {kind: _make_actor(kind, handler) for kind, handler in HANDLERS.items()}
