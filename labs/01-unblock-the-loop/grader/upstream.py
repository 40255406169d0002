"""The slow service that /fetch calls: every /data request takes DELAY_MS and
answers with UPSTREAM_TOKEN, so the grader knows the answer came from here."""

import os

from conclab.labs.harness import slow_service

app = slow_service("/data", os.environ.get("UPSTREAM_TOKEN", "upstream-data"))
