"""The dense ranking model behind one interface: Triton in serving, TorchScript in process.

Both take ``EMBEDDINGS`` float32 [C, E] and ``DENSE`` float32 [C, N] and return the three
rates float32 [C] (click; conversion given a click; negative feedback). A model that cannot
answer raises :class:`ModelUnavailableError`, which the service turns into a 503.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from adrank.artifacts import MODEL_FILE
from adrank.orchestrator.errors import ModelUnavailableError


class Rates(NamedTuple):
    """The dense model's answer for ``C`` candidates, each float32 [C]."""

    p_ctr: np.ndarray  # click
    p_cvr: np.ndarray  # conversion given a click
    p_neg: np.ndarray  # negative feedback


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
        return Rates(out.p_ctr.reshape(-1), out.p_cvr.reshape(-1), out.p_neg.reshape(-1))

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
        self.version = f"{version_dir.parent.name}/{version_dir.name} (in process)"

    def predict(self, embeddings: np.ndarray, dense: np.ndarray) -> Rates:
        torch = self._torch
        with torch.inference_mode():
            ctr, cvr, neg = self._module(torch.from_numpy(embeddings), torch.from_numpy(dense))
        return Rates(ctr.numpy().reshape(-1), cvr.numpy().reshape(-1), neg.numpy().reshape(-1))

    def readiness(self) -> tuple[bool, str]:
        return True, f"in-process model {self.version}"
