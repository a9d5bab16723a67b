"""A schemathesis fuzzing run over every operation of the OpenAPI document idp publishes,
against a live idp: whatever idp answers (valid, invalid and unexpected input alike) must be
what the document says, and never a server error or a stack trace.

CI runs a fixed seed with a small budget (about 10 s per database backend). To explore
further: ``FUZZ_SEED=123 FUZZ_EXAMPLES=500 .venv/bin/pytest -q -s tests/fuzz``; a failure
prints a curl command that replays it.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

import requests
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events

from tests.fuzz.conftest import LiveIdp

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
    "unsupported_method",
    "ignored_auth",
    "no_stack_trace",
)


@schemathesis.check
def no_stack_trace(ctx: Any, response: Any, case: Any) -> bool | None:
    """Internals never leak into a response."""
    text = response.text or ""
    if "Traceback (most recent call last)" in text or 'File "/' in text:
        raise AssertionError("the response carries a stack trace")
    return None


def fuzz_config(live: LiveIdp, max_examples: int) -> SchemathesisConfig:
    assert live.rp.client_secret is not None
    real = {
        "client_id": live.rp.client_id,
        "redirect_uri": live.rp.redirect_uri,
        "response_type": "code",
        "scope": "openid profile",
    }
    return SchemathesisConfig.from_dict(
        {
            "base-url": live.base,
            "seed": int(os.environ.get("FUZZ_SEED", "9")),  # fixed: CI is reproducible
            # Hypothesis' speed checks would fail the run on a busy CI machine, not on idp.
            "suppress-health-check": ["too_slow"],
            "generation": {"max-examples": max_examples, "mode": "all", "database": "none"},
            "phases": {"stateful": {"enabled": False}},
            "checks": {
                "enabled": False,
                **{name: {"enabled": True} for name in CHECKS},
            },
            # Half the time the values of a real request (the client, its redirect URI, a
            # supported response type and scope), so that the authorization and end-session
            # endpoints are reached beyond "unknown client".
            "dictionaries": {name: {"values": [value]} for name, value in real.items()},
            "parameters": {
                f"{where}.{name}": {"dictionary": name, "probability": 0.5}
                for where in ("query", "body")
                for name in real
            },
            "auth": {
                "openapi": {
                    "clientSecretBasic": {
                        "username": live.rp.client_id,
                        "password": live.rp.client_secret,
                    },
                    "bearerAccessToken": {"bearer": live.access_token},
                }
            },
        }
    )


def published(live: LiveIdp) -> dict[str, Any]:
    response = requests.get(live.base + "/openapi.json", timeout=10)
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document


def run(live: LiveIdp, max_examples: int) -> tuple[list[str], Counter[str]]:
    """(failures, requests per "METHOD /path STATUS") of one fuzzing run."""
    # Fetched from the live idp, loaded from the dict: schemathesis leaves out the operation
    # its schema was loaded from by URL, and /openapi.json is an operation too.
    schema = schemathesis.openapi.from_dict(published(live), config=fuzz_config(live, max_examples))
    failures: list[str] = []
    requests: Counter[str] = Counter()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            for interaction in recorder.interactions.values():
                status = interaction.response.status_code if interaction.response else 0
                requests[f"{recorder.label} {status}"] += 1
            for checks in recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        info = check.failure_info
                        failures.append(
                            f"{recorder.label}: {check.name}: {info.failure.title}\n"
                            f"{info.failure.message}\n{info.code_sample}"
                        )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            failures.append(f"{getattr(event, 'label', '')}: error: {event.info.message}")
    return failures, requests


def test_every_operation_answers_as_documented(live_idp: LiveIdp) -> None:
    started = time.monotonic()
    failures, requests = run(live_idp, int(os.environ.get("FUZZ_EXAMPLES", "30")))
    elapsed = time.monotonic() - started
    print(f"fuzzed {sum(requests.values())} requests in {elapsed:.1f}s: {sorted(requests.items())}")
    assert not failures, "\n\n".join(dict.fromkeys(failures))
    labels = {
        f"{method.upper()} {path}"
        for path, item in published(live_idp)["paths"].items()
        for method in item
    }
    exercised = {key.rsplit(" ", 1)[0] for key in requests}
    assert labels <= exercised, labels - exercised
    # The credentials worked: authenticated paths answered, not only the rejections.
    for succeeded in ("POST /token 200", "POST /introspect 200", "GET /userinfo 200"):
        assert requests[succeeded] > 0, succeeded
    # The real client's authorization requests went through: back to it, or on to sign-in.
    assert requests["GET /authorize 302"] + requests["GET /authorize 303"] > 0, requests
