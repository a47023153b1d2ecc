"""Installs the studio's Redis broker as Dramatiq's global broker. Import before any actor."""

from __future__ import annotations

from core.jobs.queue import get_broker

broker = get_broker()
