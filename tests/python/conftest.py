"""Session fixtures: one gateway (stub upstream + Worker under wrangler dev) for the whole run.

.ci/test starts it once for every suite and passes E2E_BASE_URL and E2E_STUB_URL; run alone,
pytest starts its own through tests/e2e/launch.mjs and stops it at the end.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_KEY = "sk-stub-upstream-secret-0123456789"
PERSONA = "zaguanai/socrates"
# The client keys the harness gives the Worker (tests/e2e/harness.mjs, GATEWAY_API_KEYS).
CLIENT_KEYS = [f"sk-e2e-client-{i:02d}" for i in range(64)]
START_TIMEOUT_S = 20 * 60  # a first build compiles the Worker and the persona tool


@dataclass
class Gateway:
    base_url: str
    stub_url: str

    @property
    def stub_origin(self) -> str:
        return self.stub_url.removesuffix("/v1")

    def client(self, **options) -> openai.OpenAI:
        options.setdefault("max_retries", 0)
        options.setdefault("timeout", 30.0)
        options.setdefault("api_key", random.choice(CLIENT_KEYS))
        return openai.OpenAI(base_url=self.base_url, **options)

    def get(self, path: str, key: str | None = None):
        """A GET through urllib with a client key: the response, or the HTTPError raised."""
        request = urllib.request.Request(f"{self.base_url}{path}")
        request.add_header("Authorization", f"Bearer {key or random.choice(CLIENT_KEYS)}")
        try:
            return urllib.request.urlopen(request, timeout=10)
        except urllib.error.HTTPError as error:
            return error

    def upstream_saw(self, request_id: str) -> list[dict]:
        query = urllib.parse.urlencode({"request_id": request_id})
        with urllib.request.urlopen(
            f"{self.stub_origin}/__stub/requests?{query}", timeout=10
        ) as response:
            return json.load(response)

    def the_upstream_request(self, request_id: str) -> dict:
        seen = self.upstream_saw(request_id)
        assert len(seen) == 1, f"the stub saw {len(seen)} requests with x-request-id {request_id}"
        return seen[0]


def _launch():
    process = subprocess.Popen(
        ["node", "tests/e2e/launch.mjs"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stdout], daemon=True
    ).start()
    try:
        line = lines.get(timeout=START_TIMEOUT_S)
    except queue.Empty:
        line = ""
    if not line.startswith("ready "):
        _stop(process)
        raise RuntimeError(f"tests/e2e/launch.mjs did not start the gateway (got {line!r})")
    urls = json.loads(line.removeprefix("ready "))
    return process, Gateway(urls["base_url"], urls["stub_url"])


def _stop(process: subprocess.Popen) -> None:
    try:
        if process.stdin:
            process.stdin.close()
        process.wait(timeout=30)
    except (subprocess.TimeoutExpired, OSError):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def gw():
    base_url = os.environ.get("E2E_BASE_URL")
    stub_url = os.environ.get("E2E_STUB_URL")
    if base_url and stub_url:
        yield Gateway(base_url.rstrip("/"), stub_url.rstrip("/"))
        return
    process, gateway = _launch()
    try:
        yield gateway
    finally:
        _stop(process)


@pytest.fixture()
def client(gw):
    return gw.client()


@pytest.fixture()
def request_id():
    return f"py-{uuid.uuid4().hex[:16]}"
