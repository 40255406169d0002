"""The rates service that /rates calls: every /rates request takes DELAY_MS and
answers JSON holding UPSTREAM_TOKEN, so the grader knows the answer came from here."""

import json
import os

from conclab.labs.harness import slow_service

RATES = {
    "EUR": 1.0,
    "USD": 1.08,
    "GBP": 0.85,
    "token": os.environ.get("UPSTREAM_TOKEN", "upstream-data"),
}

app = slow_service("/rates", json.dumps(RATES), b"application/json")
