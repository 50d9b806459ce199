"""Experiments over real HTTP on loopback: the arms and propensities in the JSON answer, the
request log written by the service and joined back by request id; without experiments the
answer keeps its form."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest

from adrank.experiments.assignment import ExperimentSet
from adrank.experiments.request_log import RequestLog, read_request_log
from adrank.experiments.serving import ExperimentRanker
from adrank.service.app import create_app
from adrank.service.stack import HttpServer
from service_world import build_world

EXPERIMENTS = {
    "experiment": [
        {
            "name": "explore",
            "layer": "selection",
            "salt": "http-1",
            "arm": [{"name": "softmax", "share": 1.0, "temperature": 0.2, "pool": 6}],
        }
    ]
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("experiment-http"))


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{url}/v1/rank", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def test_arms_and_propensities_are_answered_and_logged(world, tmp_path):
    log = RequestLog(tmp_path / "log", rows_per_part=3)
    backend = ExperimentRanker(
        world.ranker, ExperimentSet.from_mapping(EXPERIMENTS), log=log.append
    )
    answers = {}
    with HttpServer(create_app(backend, schema=world.schema)) as http:
        for i in range(4):
            body = world.good_body(f"h{i}")
            answers[body["request_id"]] = _post(http.url, body)
    log.close()
    for answer in answers.values():
        assert answer["arms"] == {"explore": "softmax"}
        propensities = [c["propensity"] for c in answer["creatives"]]
        assert propensities
        assert all(0 < p <= 1 for p in propensities)
    table = read_request_log(tmp_path / "log")
    assert len(log.parts()) == 2
    assert sorted(table.column("request_id").to_pylist()) == sorted(answers)
    for row in table.to_pylist():
        answer = answers[row["request_id"]]
        assert row["shown_creative_id"] == [c["creative_id"] for c in answer["creatives"]]
        np.testing.assert_allclose(
            row["propensity"], [c["propensity"] for c in answer["creatives"]]
        )
        assert json.loads(row["arms"]) == answer["arms"]


def test_without_experiments_the_answer_keeps_its_form(world):
    with HttpServer(create_app(world.ranker, schema=world.schema)) as http:
        answer = _post(http.url, world.good_body("plain"))
    assert "arms" not in answer
    assert answer["creatives"]
    assert all("propensity" not in c for c in answer["creatives"])


def test_serve_refuses_a_bad_experiments_file_before_starting(tmp_path):
    from adrank.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text("[[experiment]]\nname = 'a'\n")
    with pytest.raises(SystemExit, match="--experiments: experiment 'a': layer is required"):
        main(["serve", "--experiments", str(bad), "--workspace", str(tmp_path / "none")])
    with pytest.raises(SystemExit, match="--request-log-max-mb must be >= 1"):
        main(["serve", "--request-log", str(tmp_path), "--request-log-max-mb", "0"])
