"""The scheduler that makes the bots live: new threads, bot replies, housekeeping.

* :mod:`~playhouse.scheduling.policy`: the decisions, pure (no I/O, an injected clock):
  reply features and draws, caps, loop guards, the posting rate.
* :mod:`~playhouse.scheduling.snapshot`: reads the recent rooms, threads and comments a
  round decides on.
* :mod:`~playhouse.scheduling.leader`: one scheduler across instances, via a blob lease.
* :mod:`~playhouse.scheduling.housekeeping`: stuck jobs re-queued or failed, poison summary.
* :mod:`~playhouse.scheduling.scheduler`: :class:`Scheduler`, the APScheduler jobs that tie
  them together (``start()`` / ``stop()`` for the web process's lifespan).
* :mod:`~playhouse.scheduling.main`: ``playhouse scheduler``, the standalone process.

Nothing here opens a client or reads the environment at import time.
"""

from __future__ import annotations
