"""The README's curl example ranks creatives: its body, sent as written to a real service
(uvicorn on loopback, a real Ranker) over the demo workspace's catalog, answers 200 with
a ranking, and the candidates it names are active and sold in its region.

The demo's catalog is deterministic: ``adrank demo`` draws it from ``DEMO_WORLD`` with seed 0
before any impression, so this test's catalog (drawn with few impressions) is the demo's.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest

from adrank.data import generate_log
from adrank.data.catalog import catalog_table
from adrank.service.stack import HttpServer
from adrank.workspace import DEMO_WORLD
from service_world import build_world, make_service

README = Path(__file__).resolve().parents[1] / "README.md"
CURL = re.search(
    r"curl -s localhost:8000/v1/rank -H 'content-type: application/json' -d '(.*?)'",
    README.read_text(),
    flags=re.DOTALL,
)


@pytest.fixture(scope="module")
def body() -> dict:
    assert CURL, "the README's curl example for /v1/rank is gone"
    return json.loads(CURL.group(1))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    world = build_world(
        tmp_path_factory.mktemp("demo"), DEMO_WORLD, seed=0, catalog_seed=0, paused_share=0.05
    )
    with HttpServer(make_service(world).app) as http:
        yield world, http


def test_the_demo_catalog_does_not_depend_on_the_log_size() -> None:
    few, many = (
        catalog_table(generate_log(n, seed=0, config=DEMO_WORLD), seed=0) for n in (1, 3000)
    )
    for column in ("creative_id", "campaign_id", "status", "regions", "bid"):
        assert few[column].to_pylist() == many[column].to_pylist(), column


def test_the_example_candidates_can_be_shown(demo, body) -> None:
    world, _ = demo
    rows = {r["creative_id"]: r for r in world.catalog.to_pylist()}
    for creative in body["candidates"]:
        assert rows[creative]["status"] == "active", creative
        assert body["region"] in rows[creative]["regions"], creative


def test_the_example_returns_a_ranking(demo, body) -> None:
    _, http = demo
    response = httpx.post(
        f"{http.url}/v1/rank", content=CURL.group(1), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    ranked = [c["creative_id"] for c in response.json()["creatives"]]
    assert len(ranked) == body["k"]
    assert set(ranked) <= set(body["candidates"])
    assert np.all(np.diff([c["ecpm"] for c in response.json()["creatives"]]) <= 0)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_curl_command_runs_as_written(demo) -> None:
    _, http = demo
    command = CURL.group(0).replace("localhost:8000", f"localhost:{http.port}")
    answer = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["creatives"], answer.stdout
