"""The Python-backend model outside Triton, with a stand-in for ``triton_python_backend_utils``.

The real server runs it in tests/test_triton_client.py; here each path of ``execute`` (one
request, a dynamic batch, a failing request inside a batch) is checked deterministically.
"""

from __future__ import annotations

import json
import sys
import types
import warnings

import numpy as np
import pytest
import torch
from google.protobuf import json_format
from torch import nn

from adrank.triton.model_config import OUTPUT_NAMES, build_model_config
from adrank.triton.python_backend import (
    OnnxRunner,
    TorchRunner,
    TritonPythonModel,
    run_dense,
    runtime_from_config,
    threads_from_config,
)
from adrank.triton.testing import DemoDenseRanker, RejectsNaN, script

E, N = 6, 2


class FakeTensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self.name, self.array = name, array

    def as_numpy(self) -> np.ndarray:
        return self.array


class FakeError:
    def __init__(self, message: str) -> None:
        self._message = message

    def message(self) -> str:
        return self._message


class FakeResponse:
    def __init__(self, output_tensors=(), error=None) -> None:
        self.outputs = {t.name: t.array for t in output_tensors}
        self.error = error


@pytest.fixture
def pb_utils(monkeypatch):
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = FakeTensor
    module.TritonError = FakeError
    module.InferenceResponse = FakeResponse
    module.get_input_tensor_by_name = lambda request, name: request[name]
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", module)
    return module


def _request(embeddings: np.ndarray, dense: np.ndarray) -> dict:
    return {"EMBEDDINGS": FakeTensor("EMBEDDINGS", embeddings), "DENSE": FakeTensor("DENSE", dense)}


def _export_onnx(module: nn.Module, path) -> None:
    inputs = (torch.zeros(2, E), torch.zeros(2, N))
    batch = {0: "B"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module.eval(),
            inputs,
            str(path),
            input_names=["EMBEDDINGS", "DENSE"],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={n: batch for n in ["EMBEDDINGS", "DENSE", *OUTPUT_NAMES]},
            opset_version=17,
            dynamo=False,
        )


def _initialized(
    tmp_path, module: nn.Module, threads: int = 1, deployment: str = "python_torch_fp32"
) -> TritonPythonModel:
    (tmp_path / "ranker" / "4").mkdir(parents=True)
    if deployment.startswith("python_onnx"):
        _export_onnx(module, tmp_path / "ranker" / "4" / "model.onnx")
        deployment = "python_onnx_fp32"
    else:
        script(module).save(str(tmp_path / "ranker" / "4" / "model.pt"))
    config = build_model_config(
        "ranker", embedding_dim=E, dense_dim=N, threads=threads, deployment=deployment
    )

    model = TritonPythonModel()
    model.initialize(
        {
            "model_config": json.dumps(
                json_format.MessageToDict(config, preserving_proto_field_name=True)
            ),
            "model_repository": str(tmp_path / "ranker"),
            "model_version": "4",
        }
    )
    return model


def dense_ref(module: nn.Module, embeddings: np.ndarray, dense: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        outputs = module(torch.from_numpy(embeddings), torch.from_numpy(dense))
    return [o.numpy() for o in outputs]


def _inputs(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((rows, E), dtype=np.float32),
        rng.standard_normal((rows, N), dtype=np.float32),
    )


@pytest.mark.parametrize("deployment", ["python_torch_fp32", "python_onnx_fp32"])
def test_one_request_matches_the_torch_module(tmp_path, pb_utils, deployment):
    module = DemoDenseRanker(E, N)
    model = _initialized(tmp_path, module, deployment=deployment)
    embeddings, dense = _inputs(5, seed=1)
    [response] = model.execute([_request(embeddings, dense)])
    assert response.error is None
    for name, expected in zip(OUTPUT_NAMES, dense_ref(module, embeddings, dense), strict=True):
        assert response.outputs[name].dtype == np.float32
        assert response.outputs[name].shape == (5, 1)
        np.testing.assert_allclose(response.outputs[name], expected, rtol=0, atol=1e-6)


def test_only_the_configs_outputs_are_answered(tmp_path, pb_utils):
    class ClickOnly(nn.Module):
        def forward(self, embeddings: torch.Tensor, dense: torch.Tensor) -> tuple[torch.Tensor]:
            return (torch.sigmoid(embeddings[:, :1] + dense[:, :1]),)

    (tmp_path / "ranker" / "1").mkdir(parents=True)
    script(ClickOnly()).save(str(tmp_path / "ranker" / "1" / "model.pt"))
    config = build_model_config("ranker", embedding_dim=E, dense_dim=N, outputs=["P_CTR"])
    model = TritonPythonModel()
    model.initialize(_args(config, tmp_path / "ranker", "1"))
    embeddings, dense = _inputs(4, seed=5)
    [response] = model.execute([_request(embeddings, dense)])
    assert response.error is None
    assert list(response.outputs) == ["P_CTR"]
    expected = 1 / (1 + np.exp(-(embeddings[:, :1] + dense[:, :1])))
    np.testing.assert_allclose(response.outputs["P_CTR"], expected, rtol=1e-6)


def _args(config, model_dir, version: str) -> dict:
    return {
        "model_config": json.dumps(
            json_format.MessageToDict(config, preserving_proto_field_name=True)
        ),
        "model_repository": str(model_dir),
        "model_version": version,
    }


@pytest.mark.parametrize("deployment", ["python_torch_fp32", "python_onnx_fp32"])
def test_a_dynamic_batch_is_split_back_per_request(tmp_path, pb_utils, deployment):
    module = DemoDenseRanker(E, N)
    model = _initialized(tmp_path, module, deployment=deployment)
    batches = [_inputs(rows, seed=rows) for rows in (1, 7, 3)]
    responses = model.execute([_request(e, d) for e, d in batches])
    assert len(responses) == 3
    for response, (embeddings, dense) in zip(responses, batches, strict=True):
        assert response.error is None
        expected = dense_ref(module, embeddings, dense)
        for name, want in zip(OUTPUT_NAMES, expected, strict=True):
            np.testing.assert_allclose(response.outputs[name], want, rtol=0, atol=1e-6)


def test_a_failing_request_gets_the_error_and_the_others_their_outputs(tmp_path, pb_utils):
    module = RejectsNaN(E, N)
    model = _initialized(tmp_path, module)
    good_a, good_b = _inputs(4, seed=2), _inputs(2, seed=3)
    bad_embeddings, bad_dense = _inputs(3, seed=4)
    bad_dense[1, 0] = np.nan
    responses = model.execute(
        [_request(*good_a), _request(bad_embeddings, bad_dense), _request(*good_b)]
    )
    assert responses[1].outputs == {}
    assert "DENSE holds NaN" in responses[1].error.message()
    assert "model 'ranker'" in responses[1].error.message()
    for response, inputs in [(responses[0], good_a), (responses[2], good_b)]:
        assert response.error is None
        np.testing.assert_allclose(
            response.outputs["P_CTR"], dense_ref(module, *inputs)[0], rtol=0, atol=1e-6
        )


@pytest.mark.parametrize(
    ("deployment", "filename"),
    [("python_torch_fp32", "model.pt"), ("python_onnx_int8", "model.int8.onnx")],
)
def test_missing_model_file_fails_initialize(tmp_path, deployment, filename):
    config = build_model_config("ranker", embedding_dim=E, dense_dim=N, deployment=deployment)
    with pytest.raises(FileNotFoundError, match=rf"model file not found: .*1/{filename}"):
        TritonPythonModel().initialize(_args(config, tmp_path, "1"))


@pytest.mark.parametrize(("runner", "match"), [(TorchRunner, "TorchScript"), (OnnxRunner, "ONNX")])
def test_a_file_that_is_not_a_model_fails_initialize(tmp_path, runner, match):
    path = tmp_path / "model.bin"
    path.write_bytes(b"not a model")
    with pytest.raises(RuntimeError, match=f"is not a loadable {match} file"):
        runner(path, threads=1)


def test_initialize_sets_torch_threads(tmp_path, pb_utils):
    before = torch.get_num_threads()
    try:
        _initialized(tmp_path, RejectsNaN(E, N), threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


class WrongShape(nn.Module):
    def forward(
        self, embeddings: torch.Tensor, dense: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ctr = embeddings[:, :2]
        return ctr, ctr, ctr


class TwoOutputs(nn.Module):
    def forward(
        self, embeddings: torch.Tensor, dense: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return embeddings[:, :1], dense[:, :1]


@pytest.mark.parametrize(
    ("module", "match"),
    [
        (WrongShape(), r"P_CTR: expected shape \(3, 1\), got \(3, 2\)"),
        (TwoOutputs(), "must return 3 tensors"),
    ],
)
def test_model_outputs_that_break_the_contract_are_errors(module, match):
    embeddings, dense = _inputs(3, seed=0)
    with pytest.raises(RuntimeError, match=match):
        run_dense(_torch_runner(module), embeddings, dense, list(OUTPUT_NAMES))


def _torch_runner(module: nn.Module) -> TorchRunner:
    runner = TorchRunner.__new__(TorchRunner)
    runner._torch, runner.module = torch, script(module)
    return runner


def test_contract_breaking_model_fails_only_its_request(tmp_path, pb_utils):
    model = _initialized(tmp_path, WrongShape())
    [response] = model.execute([_request(*_inputs(3, seed=0))])
    assert "P_CTR: expected shape (3, 1)" in response.error.message()


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({}, 1),
        ({"TORCH_NUM_THREADS": {"string_value": "3"}}, 3),
        ({"NUM_THREADS": {"string_value": "2"}}, 2),
    ],
)
def test_threads_from_config(parameters, expected):
    assert threads_from_config({"parameters": parameters}) == expected


@pytest.mark.parametrize("key", ["NUM_THREADS", "TORCH_NUM_THREADS"])
@pytest.mark.parametrize(
    ("value", "match"),
    [("two", "must be an integer, got 'two'"), ("0", "must be >= 1, got 0")],
)
def test_bad_threads_parameter(key, value, match):
    config = {"parameters": {key: {"string_value": value}}}
    with pytest.raises(ValueError, match=f"{key} {match}"):
        threads_from_config(config)


def test_runtime_from_config():
    assert runtime_from_config({}) == ("torch", "model.pt")
    config = {
        "parameters": {
            "RUNTIME": {"string_value": "onnxruntime"},
            "MODEL_FILE": {"string_value": "model.int8.onnx"},
        }
    }
    assert runtime_from_config(config) == ("onnxruntime", "model.int8.onnx")


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("RUNTIME", "tensorflow", r"RUNTIME must be one of \['onnxruntime', 'torch'\]"),
        ("MODEL_FILE", "../model.pt", "MODEL_FILE must be a file name"),
    ],
)
def test_bad_runtime_parameters(key, value, match):
    with pytest.raises(ValueError, match=match):
        runtime_from_config({"parameters": {key: {"string_value": value}}})


def test_a_config_without_outputs_fails_initialize(tmp_path):
    config = build_model_config("ranker", embedding_dim=E, dense_dim=N)
    del config.output[:]
    with pytest.raises(ValueError, match="declares no outputs"):
        TritonPythonModel().initialize(_args(config, tmp_path, "1"))
