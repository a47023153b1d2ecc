"""The full catalogue of job kinds: importing this module registers every kind of every domain.

Each domain registers its own kinds, with their payload models and prepare functions, in the module
that prepares them. Nothing imports this module but the programs' entry points (the app, the HTTP
server, the workers and their CLI) and the tests, so no domain depends on another to register and no
cycle can form. Importing every domain also completes the hooks a lower domain takes from a higher one
(the library purges LoRA versions with the remover ``core.training.runs`` hands it).
``all_specs`` and ``get_spec`` are re-exported for those callers.
"""

from __future__ import annotations

from core.automation import pipelines  # notify
from core.characters import likeness  # fingerprint
from core.datasets import datasets  # caption
from core.generation import requests as generation  # generate
from core.jobs import kinds  # noop, sleep
from core.jobs.kinds import JobSpec, all_specs, get_spec
from core.models_registry import install as models_install  # install-model, download-model
from core.publishing import planning, posts  # plan, publish
from core.training import runs  # train
from core.video import motion  # motion
from core.video import requests as video  # video, voice-preview
from core.video import scripts as video_scripts  # video-script

DOMAINS = (kinds, likeness, datasets, runs, generation, video, motion, video_scripts, posts, planning, pipelines,
           models_install)

kinds.mark_catalogue_loaded()

__all__ = ["DOMAINS", "JobSpec", "all_specs", "get_spec"]
