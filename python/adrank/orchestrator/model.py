"""The dense ranking model behind one interface: Triton in serving, TorchScript in process.

Both take ``EMBEDDINGS`` float32 [C, E] and ``DENSE`` float32 [C, N] and return the rates
float32 [C] of the heads the model was trained for (click always; conversion given a click and
negative feedback when the log had their labels; None otherwise). A model that cannot answer
raises :class:`ModelUnavailableError`, which the service turns into a 503.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from adrank.artifacts import MODEL_FILE
from adrank.orchestrator.errors import ModelUnavailableError


class Rates(NamedTuple):
    """The dense model's answer for ``C`` candidates, each float32 [C]; None for a head the
    model was not trained for."""

    p_ctr: np.ndarray  # click
    p_cvr: np.ndarray | None  # conversion given a click
    p_neg: np.ndarray | None  # negative feedback


class DenseModel(Protocol):
    version: str

    def predict(self, embeddings: np.ndarray, dense: np.ndarray) -> Rates: ...

    def readiness(self) -> tuple[bool, str]: ...


class TritonModel:
    """The ranker on a Triton server, through adrank's gRPC client (deadline and retries)."""

    def __init__(
        self,
        url: str,
        model: str = "ranker",
        version: str = "",
        timeout_s: float = 0.1,
        retries: int = 1,
    ) -> None:
        from adrank.triton.client import RankerClient

        self._client = RankerClient(
            url, model=model, model_version=version, timeout_s=timeout_s, retries=retries
        )
        self.version = f"{model}/{version or 'latest'}"

    def predict(self, embeddings: np.ndarray, dense: np.ndarray) -> Rates:
        from adrank.triton.client import RankerClientError

        try:
            out = self._client.predict(embeddings, dense)
        except RankerClientError as error:
            raise ModelUnavailableError(f"ranking model unavailable: {error}") from None
        return Rates(*(None if rate is None else rate.reshape(-1) for rate in out))

    def warm_up(
        self, candidates: int, embedding_dim: int, dense_dim: int, timeout_s: float = 60.0
    ) -> None:
        """Calls the model twice at ``candidates`` rows under a long deadline.

        The first calls of a fresh model instance compile and allocate (seconds on a small
        CPU); without this the service's first requests would miss their deadline.
        """
        from adrank.triton.client import RankerClient, RankerClientError

        client = self._client
        embeddings = np.zeros((candidates, embedding_dim), dtype=np.float32)
        dense = np.zeros((candidates, dense_dim), dtype=np.float32)
        with RankerClient(
            client.url, model=client.model, model_version=client.model_version, timeout_s=timeout_s
        ) as patient:
            try:
                patient.wait_ready(timeout_s)
                for _ in range(2):
                    patient.predict(embeddings, dense)
            except RankerClientError as error:
                raise ModelUnavailableError(f"ranking model unavailable: {error}") from None

    def readiness(self) -> tuple[bool, str]:
        if self._client.is_ready():
            return True, f"model {self.version} ready at {self._client.url}"
        return False, f"model {self.version} is not ready at {self._client.url}"

    def close(self) -> None:
        self._client.close()


class TorchScriptModel:
    """The exported dense part run in this process with torch: a stand-in and a baseline."""

    def __init__(self, version_dir: str | Path, num_threads: int = 1) -> None:
        import torch

        from adrank.export import load_dense_model

        version_dir = Path(version_dir)
        if not (version_dir / MODEL_FILE).exists():
            raise FileNotFoundError(f"no {MODEL_FILE} in {version_dir}")
        torch.set_num_threads(num_threads)
        self._torch = torch
        self._module = load_dense_model(version_dir).eval()
        self._version_dir = version_dir
        self._declared: tuple[str, ...] | None = None  # the config's outputs, read once
        self.version = f"{version_dir.parent.name}/{version_dir.name} (in process)"

    def predict(self, embeddings: np.ndarray, dense: np.ndarray) -> Rates:
        torch = self._torch
        with torch.inference_mode():
            out = self._module(torch.from_numpy(embeddings), torch.from_numpy(dense))
        rates = dict(
            zip(self._outputs(len(out)), (t.numpy().reshape(-1) for t in out), strict=True)
        )
        return Rates(rates["P_CTR"], rates.get("P_CVR"), rates.get("P_NEG"))

    def _outputs(self, count: int) -> tuple[str, ...]:
        """The heads the module answers, in order: all three, or those its config declares."""
        if count == 3:
            return ("P_CTR", "P_CVR", "P_NEG")
        if self._declared is None:
            from adrank.triton.model_config import ranker_signature, read_model_config

            config = read_model_config(self._version_dir.parent / "config.pbtxt")
            self._declared = ranker_signature(config).outputs
        return self._declared

    def readiness(self) -> tuple[bool, str]:
        return True, f"in-process model {self.version}"
