"""The online learner's click rate in the serving process (``adrank.online.serving``): the
ranker's hook over a real in-process model, over HTTP, while publications arrive; the error
paths; and ``adrank serve --online`` beside ``adrank learn`` as real processes (Triton)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from adrank.commands import serve
from adrank.online import FMLearner, LearnerConfig, Publisher
from adrank.online.serving import OnlineScorer
from adrank.orchestrator.request import RankRequest
from adrank.ports import free_port
from adrank.service.schemas import rank_request_json
from adrank.workspace import sample_requests
from service_world import LOCAL, build_world, make_service, wait_until
from serving_process import start_serve

# creative_id from the catalog, user_id from the request's user, hour from its context; the
# fourth is in neither, so it reads as the zero row.
FIELDS = ("creative_id", "user_id", "hour", "not_in_requests")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("online_serving"))


def request_of(world, candidates: list[int], request_id: str = "r") -> RankRequest:
    region = world.user["country"]
    return RankRequest(
        request_id=request_id,
        user=world.user,
        context={"placement": "feed", "hour": 20, "network": "wifi"},
        candidates=np.array(candidates),
        k=len(candidates),
        region=region,
    )


def train(learner: FMLearner, creatives: np.ndarray, clicks_of, user: int, seed: int) -> None:
    """Impressions of ``creatives`` for ``user`` at hour 20; a creative clicks per ``clicks_of``."""
    rng = np.random.default_rng(seed)
    creative = rng.choice(creatives, size=4000)
    columns = {
        "creative_id": creative,
        "user_id": np.full(4000, user),
        "hour": np.full(4000, 20),
        "not_in_requests": rng.integers(0, 5, size=4000),
    }
    clicks = (rng.random(4000) < clicks_of(creative)).astype(np.int64)
    for start in range(0, 4000, 500):
        part = {f: v[start : start + 500] for f, v in columns.items()}
        learner.step(part, clicks[start : start + 500], now=seed)


def online_rates(learner: FMLearner, creatives: np.ndarray, user: int) -> np.ndarray:
    n = len(creatives)
    columns = {
        "creative_id": creatives,
        "user_id": np.full(n, user),
        "hour": np.full(n, 20),
        "not_in_requests": np.full(n, -1),  # never trained: the zero row, as in serving
    }
    return learner.predict(columns)


def test_the_ranker_scores_with_each_publication_as_it_is_applied(world, tmp_path) -> None:
    candidates = world.sold_in(world.user["country"], 20)
    shown = np.array(candidates)
    learner = FMLearner(LearnerConfig(fields=FIELDS, label="click", dim=4))
    publisher = Publisher(learner, tmp_path)
    scorer = OnlineScorer(tmp_path, poll_s=0.02)
    ranker = world.ranker
    dense = ranker.rank(request_of(world, candidates))
    ranker.online = scorer
    try:
        # Nothing published: the dense model's rates, its version alone.
        before = ranker.rank(request_of(world, candidates))
        assert before.model_version == dense.model_version
        np.testing.assert_array_equal(before.p_ctr, dense.p_ctr)
        user = world.user["user_id"]
        train(learner, shown, lambda c: np.where(c % 2 == 0, 0.8, 0.05), user, seed=1)
        publisher.publish()
        with scorer:
            assert scorer.publication == 0  # applied on start
            first = ranker.rank(request_of(world, candidates))
            assert first.model_version == f"{dense.model_version}+online.0"
            np.testing.assert_allclose(
                first.p_ctr, online_rates(learner, first.creative_id, user), rtol=1e-6
            )
            assert first.p_ctr[first.creative_id % 2 == 0].min() > 0.5
            assert first.p_ctr[first.creative_id % 2 == 1].max() < 0.2
            if first.p_cvr is not None:  # the other rates stay the dense model's
                dense_cvr = dict(zip(dense.creative_id.tolist(), dense.p_cvr.tolist(), strict=True))
                for creative, p_cvr in zip(
                    first.creative_id.tolist(), first.p_cvr.tolist(), strict=True
                ):
                    assert creative not in dense_cvr or dense_cvr[creative] == p_cvr
            # A planted shift: the parities swap; the follower thread applies the delta.
            train(learner, shown, lambda c: np.where(c % 2 == 0, 0.0, 1.0), user, seed=2)
            train(learner, shown, lambda c: np.where(c % 2 == 0, 0.0, 1.0), user, seed=3)
            publisher.publish()
            assert wait_until(lambda: scorer.publication == 1, timeout_s=30)
            second = ranker.rank(request_of(world, candidates))
        assert second.model_version == f"{dense.model_version}+online.1"
        np.testing.assert_allclose(
            second.p_ctr, online_rates(learner, second.creative_id, user), rtol=1e-6
        )
        assert second.p_ctr[second.creative_id % 2 == 1].min() > 0.5
        assert second.p_ctr[second.creative_id % 2 == 0].max() < 0.2
    finally:
        ranker.online = None


def test_the_http_answer_names_the_publication(world, tmp_path) -> None:
    learner = FMLearner(LearnerConfig(fields=FIELDS, label="click", dim=4))
    publisher = Publisher(learner, tmp_path)
    for _ in range(3):
        publisher.publish()
    app = make_service(world).app
    client = TestClient(app, base_url=LOCAL)
    world.ranker.online = scorer = OnlineScorer(tmp_path)
    app.state.metrics.registry.register(scorer)  # as adrank serve --online does
    try:
        assert "adrank_online_publication -1.0" in client.get("/metrics").text
        assert scorer.poll() == 3
        answer = client.post("/v1/rank", json=world.good_body())
        metrics = client.get("/metrics").text
    finally:
        world.ranker.online = None
    assert "adrank_online_publication 2.0" in metrics
    assert 'adrank_online_rows{field="creative_id"} 0.0' in metrics
    assert "adrank_online_freshness_seconds NaN" in metrics  # published with no source time
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_version"].endswith("+online.2")
    # An untrained learner: bias 0 and zero rows, so every click rate is sigmoid(0).
    assert {c["p_ctr"] for c in body["creatives"]} == {0.5}


def test_request_values_that_are_not_integer_ids_read_as_unseen(world, tmp_path) -> None:
    learner = FMLearner(LearnerConfig(fields=("user_id",), label="click", dim=2))
    user = world.user["user_id"]
    learner.step({"user_id": np.full(64, user)}, np.ones(64), now=0)
    Publisher(learner, tmp_path).publish()
    scorer = OnlineScorer(tmp_path)
    scorer.poll()
    candidates = world.sold_in(world.user["country"], 3)
    rows, _ = world.ranker.catalog.lookup(np.array(candidates))
    view = scorer._view
    known = scorer.predict(view, request_of(world, candidates), world.ranker.catalog, rows)
    assert known == pytest.approx(online_rates_one(learner, user, 3))
    for value in ("12", 1.0, True, [user], 2**70):
        request = replace(request_of(world, candidates), user={**world.user, "user_id": value})
        unseen = scorer.predict(view, request, world.ranker.catalog, rows)
        assert unseen == pytest.approx(np.full(3, 1 / (1 + np.exp(-learner.bias))))


def test_any_integer_catalog_column_gives_an_id_per_candidate(world, tmp_path) -> None:
    # music_id is no Catalog attribute, only a column of its table; format is a string column.
    learner = FMLearner(LearnerConfig(fields=("music_id", "format"), label="click", dim=2))
    music = world.catalog.column("music_id").to_numpy()
    columns = {"music_id": music, "format": np.zeros(len(music), dtype=np.int64)}
    learner.step(columns, (music % 2 == 0).astype(float), now=0)
    Publisher(learner, tmp_path).publish()
    scorer = OnlineScorer(tmp_path)
    scorer.poll()
    candidates = world.sold_in(world.user["country"], 10)
    catalog = world.ranker.catalog
    rows, _ = catalog.lookup(np.array(candidates))
    served = scorer.predict(scorer._view, request_of(world, candidates), catalog, rows)
    ids = catalog.table.column("music_id").to_numpy()[rows]
    unseen = np.full(len(rows), -1)  # format reads as unseen: not an integer column
    expected = learner.predict({"music_id": ids, "format": unseen})
    np.testing.assert_allclose(served, expected, rtol=1e-6)
    assert len(set(served.tolist())) > 1


def online_rates_one(learner: FMLearner, user: int, n: int) -> np.ndarray:
    return learner.predict({"user_id": np.full(n, user)})


def test_a_publication_that_fails_is_retried_and_serving_goes_on(tmp_path, caplog) -> None:
    learner = FMLearner(LearnerConfig(fields=("creative_id",), label="click", dim=2))
    publisher = Publisher(learner, tmp_path)
    publisher.publish()
    publisher.publish()
    broken = tmp_path / "publications" / "00000002"
    broken.mkdir()
    (broken / "dense.json").write_text('{"format": "something else"}')
    scorer = OnlineScorer(tmp_path, poll_s=0.02)
    with pytest.raises(ValueError, match="is not an adrank online publication"):
        scorer.poll()
    assert scorer.publication == 1  # what was applied before the failure serves
    caplog.clear()
    with scorer, caplog.at_level(logging.WARNING):
        assert wait_until(lambda: "not applied yet" in caplog.text, timeout_s=30)
        assert scorer.publication == 1
    assert "is not an adrank online publication" in caplog.text


def test_scorer_errors_name_the_argument(tmp_path) -> None:
    with pytest.raises(ValueError, match="poll_s must be a finite number > 0, got 0"):
        OnlineScorer(tmp_path, poll_s=0)
    with pytest.raises(TypeError, match="poll_s must be a number, got str"):
        OnlineScorer(tmp_path, poll_s="1")  # type: ignore[arg-type]
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is not a directory"):
        OnlineScorer(tmp_path / "file")
    scorer = OnlineScorer(tmp_path / "not-yet")  # adrank learn may start after serve
    with scorer:
        assert scorer.publication == -1
        with pytest.raises(RuntimeError, match="already started"):
            scorer.start()


def parse_serve(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_serve_refuses_bad_online_flags_before_building_anything(tmp_path) -> None:
    missing = tmp_path / "not-built"
    with pytest.raises(SystemExit, match=r"--online-poll-seconds must be > 0, got 0\.0"):
        serve.run(
            parse_serve(
                "--online", str(tmp_path), "--online-poll-seconds", "0", "--workspace", str(missing)
            )
        )
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit, match=r"adrank serve: --online: .* is not a directory"):
        serve.run(parse_serve("--online", str(tmp_path / "file"), "--workspace", str(missing)))
    assert not missing.exists()


def write(folder: Path, name: str, data: dict[str, np.ndarray]) -> None:
    tmp = folder / f".{name}"
    pq.write_table(pa.table(data), tmp)
    os.rename(tmp, folder / name)


def served(url: str, body: dict) -> tuple[int, dict[int, float]]:
    """The publication a served answer names, and its click rate per creative."""
    answer = httpx.post(f"{url}/v1/rank", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    answer = answer.json()
    _, _, publication = answer["model_version"].partition("+online.")
    rates = {c["creative_id"]: c["p_ctr"] for c in answer["creatives"]}
    return int(publication or -1), rates


def publication_of(out: Path, name: str) -> int | None:
    for folder in sorted((out / "publications").glob("[0-9]*")):
        if name in json.loads((folder / "dense.json").read_text())["sources"]:
            return int(folder.name)
    return None


@pytest.mark.triton
def test_adrank_serve_follows_adrank_learn_through_a_planted_shift(
    serving_workspace, tmp_path
) -> None:
    workspace = serving_workspace
    request = sample_requests(workspace, 1, candidates=60, k=60, seed=3)[0]
    body = {
        **rank_request_json(request),
        "recently_seen": [],
        "constraints": {"max_per_advertiser": 60},
    }
    user, creatives = request.user["user_id"], request.candidates
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    rng = np.random.default_rng(0)

    def impressions(click_rate_of) -> dict[str, np.ndarray]:
        creative = rng.choice(creatives, size=20_000)
        users = np.where(rng.random(20_000) < 0.5, user, rng.integers(0, 500, size=20_000))
        click = (rng.random(20_000) < click_rate_of(creative)).astype(np.int64)
        return {"creative_id": creative, "user_id": users, "click": click}

    write(data, "000.parquet", impressions(lambda c: np.full(len(c), 0.3)))
    learner = subprocess.Popen(
        [
            *(sys.executable, "-m", "adrank.cli", "learn", str(data), "--out", str(out)),
            *("--fields", "creative_id,user_id", "--label", "click", "--poll-seconds", "0.05"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process = None
    try:
        process, url = start_serve(
            f"--workspace={workspace.root}",
            f"--repository={workspace.repository}",
            f"--state={tmp_path / 'state.sqlite'}",
            "--deadline-ms=5000",
            f"--online={out}",
            "--online-poll-seconds=0.1",
            port=free_port(),
        )
        assert wait_until(lambda: served(url, body)[0] >= 1, timeout_s=120)
        _, before = served(url, body)
        even = [c for c in before if c % 2 == 0]
        odd = [c for c in before if c % 2 == 1]
        assert even
        assert odd
        gap_before = np.mean([before[c] for c in even]) - np.mean([before[c] for c in odd])
        assert abs(gap_before) < 0.1  # every creative clicked alike so far
        # The shift: even creatives always clicked, odd ones never.
        write(data, "001.parquet", impressions(lambda c: (c % 2 == 0).astype(float)))
        assert wait_until(lambda: publication_of(out, "001.parquet") is not None, timeout_s=120)
        shifted = publication_of(out, "001.parquet")
        assert wait_until(lambda: served(url, body)[0] >= shifted, timeout_s=120)
        _, after = served(url, body)
        gap_after = np.mean([after[c] for c in even if c in after]) - np.mean(
            [after[c] for c in odd if c in after]
        )
        assert gap_after > 0.3
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
        assert f"adrank_online_publication {float(shifted)}" in metrics  # no file after 001
        assert "adrank_online_freshness_seconds NaN" not in metrics
    finally:
        learner.kill()
        learner.communicate(timeout=60)
        if process is not None:
            process.terminate()
            process.communicate(timeout=60)


SCORE_WITHOUT_TORCH = """
import json, sys
import numpy as np
from adrank.online.serving import OnlineScorer
import pyarrow as pa
from adrank.orchestrator.catalog import Catalog
from adrank.orchestrator.request import RankRequest

catalog = Catalog.from_arrow(pa.table({
    "creative_id": [1, 2], "advertiser_id": [1, 2], "campaign_id": [1, 2], "category": [0, 0],
    "objective": ["CPM", "CPM"], "bid": [1.0, 1.0], "target_cpa": [0.0, 0.0],
    "regions": [[], []], "status": ["active", "active"],
}))
scorer = OnlineScorer(sys.argv[1])
scorer.poll()
request = RankRequest("r", {"user_id": 3}, {}, np.array([1, 2]), k=2)
rows, _ = catalog.lookup(request.candidates)
p = scorer.predict(scorer._view, request, catalog, rows)
print(json.dumps({"torch": "torch" in sys.modules, "scored": len(p)}))
"""


def test_the_online_scorer_needs_no_torch(tmp_path) -> None:
    learner = FMLearner(LearnerConfig(fields=("user_id",), label="click", dim=2))
    Publisher(learner, tmp_path).publish()
    done = subprocess.run(
        [sys.executable, "-c", SCORE_WITHOUT_TORCH, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"torch": False, "scored": 2}
