"""Stand-ins for the libraries the reports service calls. Do not change this
file: the grader always uses its own copy of it.

- `query` and `query_async`: one database query through a driver that comes in
  two flavours, blocking and asyncio (as psycopg 3 and SQLAlchemy do).
- `render_pdf`: a vendor's PDF SDK. Blocking only: it has no async version.

Each takes `ms` milliseconds - the time the database or the renderer needs.
"""

import asyncio
import time


def _rows(report_id):
    """What the database holds for a report: the same rows every time."""
    return [{"day": day, "visits": (report_id * 37 + day * 11) % 100} for day in range(1, 4)]


def query(report_id, ms):
    """The blocking driver: this thread waits for the database, doing nothing else."""
    time.sleep(ms / 1000)
    return _rows(report_id)


async def query_async(report_id, ms):
    """The asyncio driver: awaits the database, so the loop runs other requests meanwhile."""
    await asyncio.sleep(ms / 1000)
    return _rows(report_id)


def render_pdf(report_id, ms):
    """The vendor's renderer: blocks this thread for `ms` ms, then describes the PDF."""
    time.sleep(ms / 1000)
    rows = _rows(report_id)
    return {
        "id": report_id,
        "pages": len(rows),
        "bytes": 1000 + 10 * sum(r["visits"] for r in rows),
    }
