"""The model-construction lock of a GPU worker process (a leaf: it imports nothing of the studio).

``from_pretrained`` builds modules inside accelerate's ``init_empty_weights``, which patches
``torch.nn.Module.register_parameter`` for the whole process: a module another thread builds meanwhile
(a model, a LoRA layer) lands on the meta device with no data. Every model load and adapter injection
therefore holds ``MODEL_CONSTRUCTION_LOCK``; it is held for seconds while training runs for minutes,
so runs still overlap where it matters. See also ``workers/ml/preload.py``.
"""

from __future__ import annotations

import threading

MODEL_CONSTRUCTION_LOCK = threading.RLock()
