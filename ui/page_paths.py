"""Every page file's path, named once: the targets of ``st.switch_page`` and ``st.page_link`` in ``ui/``.

app.py registers these same files in its navigation (tests/test_pages.py checks that every file in
``pages/`` is registered there, and that every path here is a page file).
"""

from __future__ import annotations

HOME = "pages/home.py"
CHARACTERS = "pages/characters.py"
DATASETS = "pages/datasets.py"
CAPTIONS = "pages/captions.py"
TRAINING = "pages/training.py"
GENERATE = "pages/generate.py"
ASSETS = "pages/assets.py"
VIDEOS = "pages/videos.py"
CALENDAR = "pages/calendar.py"
ACCOUNTS = "pages/accounts.py"
AUTOMATION = "pages/automation.py"
JOBS = "pages/jobs.py"
MONITORING = "pages/monitoring.py"
MODELS = "pages/models.py"

ALL = (HOME, CHARACTERS, DATASETS, CAPTIONS, TRAINING, GENERATE, ASSETS, VIDEOS, CALENDAR, ACCOUNTS, AUTOMATION, JOBS,
       MONITORING, MODELS)
