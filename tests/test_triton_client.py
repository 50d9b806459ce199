"""The ranker served by the real embedded Triton, called through RankerClient.

One server for the whole module (starting the Python backend's stub costs seconds); every test
leaves it serving the same models.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from tritonclient.utils import InferenceServerException

from adrank.ports import free_port
from adrank.triton.client import (
    RankerClient,
    RankerClientError,
    RankerTimeoutError,
    RankerUnavailableError,
)
from adrank.triton.model_config import RankerSignature
from adrank.triton.server import EmbeddedTriton, TritonError
from adrank.triton.testing import RejectsNaN, make_model_repository, script

pytestmark = pytest.mark.triton

E, N = 12, 3
MAX_BATCH = 2048
QUEUE_DELAY_US = 3_000_000


def ranker_ref(module: nn.Module, embeddings: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """The unsplit module's outputs, ``[3, B]`` (ctr, cvr, neg)."""
    with torch.no_grad():
        outputs = module(torch.from_numpy(embeddings), torch.from_numpy(dense))
    return np.stack([o.numpy().reshape(-1) for o in outputs])


def as_array(outputs) -> np.ndarray:
    return np.stack([outputs.p_ctr, outputs.p_cvr, outputs.p_neg])


def inputs(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((rows, E), dtype=np.float32),
        rng.standard_normal((rows, N), dtype=np.float32),
    )


@pytest.fixture(scope="module")
def modules() -> dict[str, nn.Module]:
    return {
        "ranker": RejectsNaN(E, N, seed=0),
        "versioned_v1": RejectsNaN(E, N, seed=1),
        "versioned_v2": RejectsNaN(E, N, seed=2),
    }


@pytest.fixture(scope="module")
def repository(tmp_path_factory, modules) -> Path:
    root = tmp_path_factory.mktemp("triton_models")
    make_model_repository(
        root, modules["ranker"], embedding_dim=E, dense_dim=N, max_batch_size=MAX_BATCH
    )
    make_model_repository(
        root, modules["versioned_v1"], embedding_dim=E, dense_dim=N, model="versioned"
    )
    # A model whose dynamic batcher holds a lone request for 3 s, waiting for company: a deadline
    # shorter than that expires every time, however fast the machine.
    make_model_repository(
        root,
        modules["ranker"],
        embedding_dim=E,
        dense_dim=N,
        model="queued",
        max_queue_delay_us=QUEUE_DELAY_US,
    )
    # A model whose TorchScript file is not TorchScript: loading it must fail clearly.
    make_model_repository(root, RejectsNaN(E, N), embedding_dim=E, dense_dim=N, model="broken")
    (root / "broken" / "1" / "model.pt").write_bytes(b"not a TorchScript archive")
    return root


@pytest.fixture(scope="module")
def server(repository):
    with EmbeddedTriton(repository, models=["ranker", "versioned", "queued"]) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with RankerClient(server.grpc_url, timeout_s=30.0) as ranker_client:
        yield ranker_client


@pytest.mark.parametrize("rows", [1, 7, 1000])
@pytest.mark.parametrize("shm_threshold_bytes", [-1, 0], ids=["grpc", "shared-memory"])
def test_outputs_match_the_unsplit_module(server, modules, rows, shm_threshold_bytes):
    embeddings, dense = inputs(rows, seed=rows)
    with RankerClient(
        server.grpc_url, timeout_s=30.0, shm_threshold_bytes=shm_threshold_bytes
    ) as client:
        outputs = client.predict(embeddings, dense)
    assert all(o.dtype == np.float32 and o.shape == (rows,) for o in outputs)
    expected = ranker_ref(modules["ranker"], embeddings, dense)
    np.testing.assert_allclose(as_array(outputs), expected, rtol=0, atol=1e-5)


def test_inputs_are_converted_to_contiguous_fp32(client, modules):
    embeddings, dense = inputs(5, seed=3)
    outputs = client.predict(embeddings.astype(np.float64).T.copy().T, dense.tolist())
    expected = ranker_ref(modules["ranker"], embeddings, dense)
    np.testing.assert_allclose(as_array(outputs), expected, rtol=0, atol=1e-5)


def test_concurrent_requests_each_get_their_own_outputs(server, modules):
    """Dynamic batching joins concurrent requests; the backend must split them back."""
    requests = [inputs(rows, seed=100 + rows) for rows in (3, 50, 1, 400, 9, 77, 2, 600)]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    with RankerClient(server.grpc_url, timeout_s=30.0, shm_threshold_bytes=16 << 10) as client:

        def work(index: int) -> None:
            try:
                for _ in range(3):
                    results[index] = as_array(client.predict(*requests[index]))
            except BaseException as error:  # reported on the main thread
                errors.append(error)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(requests))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    for index, (embeddings, dense) in enumerate(requests):
        expected = ranker_ref(modules["ranker"], embeddings, dense)
        np.testing.assert_allclose(results[index], expected, rtol=0, atol=1e-5)


def test_signature_is_read_from_the_server(client):
    assert client.signature() == RankerSignature("ranker", E, N, MAX_BATCH)
    assert client.is_ready()


@pytest.mark.parametrize(
    ("embedding_width", "dense_width", "match"),
    [
        (E, N + 1, r"unexpected shape for input 'DENSE'.*Expected \[-1,3\], got \[4,4\]"),
        (E - 2, N, r"unexpected shape for input 'EMBEDDINGS'.*Expected \[-1,12\], got \[4,10\]"),
    ],
)
def test_wrong_widths_get_tritons_error(client, embedding_width, dense_width, match):
    with pytest.raises(RankerClientError, match=match) as caught:
        client.predict(np.zeros((4, embedding_width)), np.zeros((4, dense_width)))
    assert caught.value.status == "INVALID_ARGUMENT"
    assert "'ranker' at 127.0.0.1:" in str(caught.value)


def test_batch_above_max_batch_size_gets_tritons_error(client):
    with pytest.raises(RankerClientError, match=f"batch-size must be <= {MAX_BATCH}"):
        client.predict(*inputs(MAX_BATCH + 1))


def test_model_failure_is_an_error_on_that_request_only(client, modules):
    embeddings, dense = inputs(4, seed=5)
    dense[2, 1] = np.nan
    with pytest.raises(RankerClientError, match="DENSE holds NaN"):
        client.predict(embeddings, dense)
    embeddings, dense = inputs(4, seed=6)
    expected = ranker_ref(modules["ranker"], embeddings, dense)
    np.testing.assert_allclose(as_array(client.predict(embeddings, dense)), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("embeddings", "dense", "match"),
    [
        (np.zeros(E), np.zeros((1, N)), r"embeddings must be 2-D \[B, width\], got shape \(12,\)"),
        (np.zeros((2, E)), np.zeros((2, N, 1)), r"dense must be 2-D .* got shape \(2, 3, 1\)"),
        (np.zeros((2, E)), np.zeros((3, N)), "same number of rows, got 2 and 3"),
        (np.zeros((0, E)), np.zeros((0, N)), "at least one row, got 0"),
    ],
)
def test_malformed_inputs_are_rejected_before_sending(client, embeddings, dense, match):
    with pytest.raises(ValueError, match=match):
        client.predict(embeddings, dense)


def test_a_deadline_too_short_is_a_timeout(server):
    with (
        RankerClient(server.grpc_url, model="queued", timeout_s=0.2) as client,
        pytest.raises(RankerTimeoutError, match="Deadline Exceeded") as caught,
    ):
        client.predict(*inputs(4))
    assert caught.value.status == "DEADLINE_EXCEEDED"


def test_shared_memory_regions_are_reused_and_freed(server):
    embeddings, dense = inputs(64)
    client = RankerClient(server.grpc_url, timeout_s=30.0, shm_threshold_bytes=0)
    for _ in range(3):
        client.predict(embeddings, dense)
    pool = client._pool_holder[0]
    [region] = pool._all
    status = client._client.get_system_shared_memory_status(region.name, as_json=True)
    assert region.name in status["regions"]
    shm_file = Path("/dev/shm") / region.name
    assert shm_file.exists()
    client.close()
    assert not shm_file.exists()
    with RankerClient(server.grpc_url) as other:
        registered = other._client.get_system_shared_memory_status(as_json=True)
    assert region.name not in registered.get("regions", {})


def test_a_new_version_is_served_without_a_restart(server, repository, modules):
    embeddings, dense = inputs(6, seed=9)
    with RankerClient(server.grpc_url, model="versioned", timeout_s=30.0) as client:
        before = as_array(client.predict(embeddings, dense))
        np.testing.assert_allclose(
            before, ranker_ref(modules["versioned_v1"], embeddings, dense), atol=1e-5
        )
        version_2 = repository / "versioned" / "2"
        version_2.mkdir()
        script(modules["versioned_v2"]).save(str(version_2 / "model.pt"))
        (version_2 / "model.py").write_text((repository / "versioned/1/model.py").read_text())
        pid = server.pid
        server.load_model("versioned")
        after = as_array(client.predict(embeddings, dense))
    assert server.pid == pid
    np.testing.assert_allclose(
        after, ranker_ref(modules["versioned_v2"], embeddings, dense), atol=1e-5
    )


def test_a_model_that_fails_to_load_names_the_cause_and_the_rest_keeps_serving(server, client):
    with pytest.raises(TritonError, match="failed to load model 'broken'") as caught:
        server.load_model("broken")
    message = str(caught.value)
    assert "model.pt is not a loadable TorchScript file" in message
    assert "PytorchStreamReader failed reading zip archive" in message  # torch's own words
    assert client.predict(*inputs(2)).p_ctr.shape == (2,)


def test_server_log_records_the_models(server):
    assert server.log_path.is_file()
    assert "successfully loaded 'ranker'" in server.log_text()


def test_unreachable_server_is_retried_then_unavailable():
    client = RankerClient(f"127.0.0.1:{free_port()}", timeout_s=2.0, retries=2, backoff_s=0.0)
    calls = []
    real_infer = client._client.infer

    def counting_infer(*args, **kwargs):
        calls.append(1)
        return real_infer(*args, **kwargs)

    client._client.infer = counting_infer
    with pytest.raises(RankerUnavailableError, match="after 3 attempts") as caught:
        client.predict(*inputs(2))
    client.close()
    assert len(calls) == 3
    assert caught.value.status == "UNAVAILABLE"


def test_unavailable_then_answer_is_retried_transparently():
    client = RankerClient("127.0.0.1:1", retries=3, backoff_s=0.0)
    answers = iter([InferenceServerException("down", status="StatusCode.UNAVAILABLE"), "answer"])

    def flaky():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert client._call(flaky) == "answer"
    client.close()


def test_other_errors_are_not_retried():
    client = RankerClient("127.0.0.1:1", retries=3, backoff_s=0.0)
    calls = []

    def rejected():
        calls.append(1)
        raise InferenceServerException("bad", status="StatusCode.INVALID_ARGUMENT")

    with pytest.raises(RankerClientError, match="bad"):
        client._call(rejected)
    client.close()
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"timeout_s": 0}, "timeout_s must be > 0"),
        ({"retries": -1}, "retries must be an int >= 0"),
        ({"backoff_s": -1.0}, "backoff_s must be >= 0"),
    ],
)
def test_bad_client_settings_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RankerClient("127.0.0.1:1", **kwargs)


@pytest.mark.parametrize(
    ("url", "uses_shm"),
    [("127.0.0.1:8001", True), ("localhost:8001", True), ("10.0.0.7:8001", False)],
)
def test_shared_memory_is_on_by_default_only_for_loopback(url, uses_shm):
    client = RankerClient(url)
    assert (client.shm_threshold_bytes >= 0) is uses_shm
    client.close()


def test_shared_memory_client_recovers_after_the_server_restarts(repository, modules):
    """A restarted server has forgotten our regions: the client registers new ones by itself."""
    embeddings, dense = inputs(64, seed=3)
    expected = ranker_ref(modules["ranker"], embeddings, dense)
    grpc_port, http_port = free_port(), free_port()
    ports = {"grpc_port": grpc_port, "http_port": http_port, "models": ["ranker"]}
    client = RankerClient(f"127.0.0.1:{grpc_port}", timeout_s=30.0, shm_threshold_bytes=0)
    try:
        with EmbeddedTriton(repository, **ports):
            np.testing.assert_allclose(
                as_array(client.predict(embeddings, dense)), expected, atol=1e-5
            )
        with EmbeddedTriton(repository, **ports):
            answers = []
            for _ in range(3):
                try:
                    answers.append(as_array(client.predict(embeddings, dense)))
                except RankerClientError:
                    answers.append(None)  # at most the first call sees the stale region
            assert answers[0] is None or answers[0].shape == expected.shape
            np.testing.assert_allclose(answers[-1], expected, atol=1e-5)
            assert answers[1] is not None
    finally:
        client.close()
