"""Does the "Forgot your password?" form answer as fast for an unknown address as for a known
one? Prints the response-time medians of both, side by side (never a pass/fail: timing
assertions do not belong in tests; see bench/README.md). ``--form signup`` measures the
sign-up form the same way (an address with an account, and a new one).

Setup: its own PostgreSQL database and Redis prefix (removed at the end), one account made with
``idp user create``, ``gunicorn 'idp:create_app()'`` with one worker (requests one at a time,
so they do not queue behind each other), the mail-request limits raised out of the way, and no
SMTP (mail stays in the outbox: the form never waits for SMTP anyway). Then ``--rounds`` rounds,
each a known and an unknown address in random order: GET /password/forgot (read the CSRF
token), then the timed POST. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from common import (
    HOST,
    ROOT,
    base_settings,
    free_port,
    gunicorn,
    postgres_database,
    redis_prefix,
)

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
KNOWN = "known.reset@example.com"
PASSWORD = "correct horse battery staple"


def _create_account(settings: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update({f"IDP_{k.upper()}": v for k, v in settings.items()})
    subprocess.run(
        [sys.executable, "-m", "idp", "user", "create", KNOWN, "--password-stdin"],
        input=PASSWORD + "\n", env=env, cwd=ROOT, check=True, capture_output=True, text=True,
        timeout=120,
    )


def _timed_request(base: str, path: str, email: str) -> tuple[float, int, str]:
    browser = requests.Session()
    page = browser.get(base + path, timeout=30).text
    match = CSRF_FIELD.search(page)
    assert match, f"no CSRF field on {path}"
    form = {"csrf_token": match.group(1), "email": email}
    if path == "/signup":
        form.update(first_name="Bench", last_name="Mark", password="another long passphrase",
                    password_again="another long passphrase")
    start = time.perf_counter()
    response = browser.post(base + path, timeout=30, data=form)
    elapsed = time.perf_counter() - start
    # The sign-up page repeats the typed address; the rest must not differ.
    return elapsed, response.status_code, CSRF_FIELD.sub("", response.text).replace(email, "@")


def _summary(label: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p90 = ms[int(0.9 * (len(ms) - 1))]
    return (f"{label:<8} n={len(ms):<4} median {statistics.median(ms):7.2f} ms   "
            f"mean {statistics.fmean(ms):7.2f} ms   p90 {p90:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="known+unknown pairs (200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed pairs first (20)")
    parser.add_argument("--form", choices=["reset", "signup"], default="reset",
                        help="the form to measure (reset)")
    options = parser.parse_args()
    path = "/password/forgot" if options.form == "reset" else "/signup"
    with (postgres_database() as database_url, redis_prefix() as prefix,
          tempfile.TemporaryDirectory() as tmp):
        port = free_port()
        settings = base_settings(database_url, prefix, Path(tmp) / "var", port)
        settings.update(email_requests_per_address_per_hour="100000000",
                        email_requests_per_ip_per_hour="100000000", signup_enabled="true")
        _create_account(settings)
        with gunicorn(settings, port, 1, Path(tmp) / "gunicorn.log"):
            base = f"http://{HOST}:{port}"
            times: dict[str, list[float]] = {"known": [], "unknown": []}
            bodies: dict[str, set[str]] = {"known": set(), "unknown": set()}
            for round_number in range(options.warmup + options.rounds):
                kinds = ["known", "unknown"]
                random.shuffle(kinds)
                for kind in kinds:
                    email = KNOWN if kind == "known" else f"nobody{round_number}@example.com"
                    elapsed, status, body = _timed_request(base, path, email)
                    assert status == 200, status
                    bodies[kind].add(body)
                    if round_number >= options.warmup:
                        times[kind].append(elapsed)
    print(f"POST {path}, {options.rounds} rounds, gunicorn 1 worker, PostgreSQL")
    print(_summary("known", times["known"]))
    print(_summary("unknown", times["unknown"]))
    difference = statistics.median(times["known"]) - statistics.median(times["unknown"])
    print(f"median difference (known - unknown): {difference * 1000:+.2f} ms")
    same = bodies["known"] == bodies["unknown"] and len(bodies["known"]) == 1
    print(f"bodies identical apart from the CSRF token (and the typed address): "
          f"{'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
