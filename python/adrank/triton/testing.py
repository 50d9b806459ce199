"""A Triton model repository and a running server from a torch module, for tests and benchmarks.

The split-pipeline parity check is three lines with these::

    repo = make_model_repository(tmp_path, dense_module, embedding_dim=E, dense_dim=N)
    with serve_ranker(repo) as (server, client):
        out = client.predict(embeddings, dense)
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from adrank.triton.client import RankerClient
from adrank.triton.model_config import (
    TORCHSCRIPT_FILENAME,
    write_model_configs,
    write_python_backend_model,
)
from adrank.triton.server import EmbeddedTriton


class DemoDenseRanker(nn.Module):
    """A dense part with the ranker's signature: DCN-v2 cross layers, an MLP, three towers.

    ``forward(embeddings [B, E], dense [B, N]) -> (p_ctr, p_cvr, p_neg)``, each ``[B, 1]``.
    Stands in for the trained model where only the serving path is under test.
    """

    def __init__(
        self,
        embedding_dim: int,
        dense_dim: int,
        *,
        hidden: Sequence[int] = (64, 32),
        cross_layers: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        torch.manual_seed(seed)
        width = embedding_dim + dense_dim
        self.cross = nn.ModuleList(nn.Linear(width, width) for _ in range(cross_layers))
        layers: list[nn.Module] = []
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.mlp = nn.Sequential(*layers)
        self.towers = nn.ModuleList(nn.Linear(width, 1) for _ in range(3))

    def forward(
        self, embeddings: torch.Tensor, dense: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x0 = torch.cat([embeddings, dense], dim=1)
        x = x0
        for layer in self.cross:
            x = x0 * layer(x) + x  # DCN-v2: x_{l+1} = x0 * (W x_l + b) + x_l
        h = self.mlp(x)
        ctr, cvr, neg = [torch.sigmoid(tower(h)) for tower in self.towers]
        return ctr, cvr, neg


class RejectsNaN(nn.Module):
    """The demo ranker, failing a request whose DENSE holds NaN: a model error on one request,
    for the tests of how the backend and the client surface it."""

    def __init__(self, embedding_dim: int, dense_dim: int, seed: int = 0) -> None:
        super().__init__()
        self.inner = DemoDenseRanker(embedding_dim, dense_dim, seed=seed)

    def forward(
        self, embeddings: torch.Tensor, dense: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if bool(torch.isnan(dense).any()):
            raise RuntimeError("DENSE holds NaN")
        return self.inner(embeddings, dense)


def script(module: nn.Module) -> torch.jit.ScriptModule:
    """``torch.jit.script`` without the deprecation warning torch 2.13 gives (TorchScript is
    the format both Triton backends serve)."""
    if isinstance(module, torch.jit.ScriptModule):
        return module
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(module)


def make_model_repository(
    root: str | Path,
    module: nn.Module,
    *,
    embedding_dim: int,
    dense_dim: int,
    model: str = "ranker",
    version: int = 1,
    max_batch_size: int = 16384,
    instances: int = 1,
    torch_threads: int = 1,
    max_queue_delay_us: int = 0,
) -> Path:
    """Write ``module`` (scripted unless it already is) as ``root/model/version``; returns ``root``.

    Writes ``model.pt``, ``model.py`` and the CPU ``config.pbtxt`` (the GPU variant too).
    ``max_queue_delay_us`` is how long the dynamic batcher holds a lone request for company.
    """
    root = Path(root)
    model_dir = root / model
    version_dir = model_dir / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    script(module).save(str(version_dir / TORCHSCRIPT_FILENAME))
    write_python_backend_model(version_dir)
    write_model_configs(
        model_dir,
        embedding_dim=embedding_dim,
        dense_dim=dense_dim,
        max_batch_size=max_batch_size,
        instances=instances,
        torch_threads=torch_threads,
        max_queue_delay_us=max_queue_delay_us,
    )
    return root


@contextlib.contextmanager
def serve_ranker(
    repository: str | Path,
    *,
    model: str = "ranker",
    timeout_s: float = 10.0,
    shm_threshold_bytes: int | None = None,
    **server_options: object,
) -> Iterator[tuple[EmbeddedTriton, RankerClient]]:
    """Start an :class:`EmbeddedTriton` on ``repository``, yield it and a client; always stop it."""
    with (
        EmbeddedTriton(repository, **server_options) as server,  # type: ignore[arg-type]
        RankerClient(
            server.grpc_url,
            model=model,
            timeout_s=timeout_s,
            shm_threshold_bytes=shm_threshold_bytes,
        ) as client,
    ):
        yield server, client
