"""The gRPC client of the ranker model on Triton (``tritonclient``).

One :class:`RankerClient` per serving process: it is thread-safe (gRPC channels are, and the
shared-memory pool takes a lock). A call has a deadline, is retried on ``UNAVAILABLE`` (server
starting, connection reset) with exponential backoff, and sends its inputs through Triton's
system shared memory instead of the gRPC message when they are large and the server is on the
same host.

After the server restarts (a supervisor brought it back on the same port), the channel
reconnects within a second of the server listening again, and the first shared-memory call
that finds its region unknown to the new server fails once and retires the pool, so the next
calls register fresh regions.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from adrank.triton.model_config import (
    INPUT_DENSE,
    INPUT_EMBEDDINGS,
    OUTPUT_NAMES,
    RankerSignature,
    ranker_signature,
)

_LOOPBACK_HOSTS = ("localhost", "127.", "[::1]")
# Measured on the 2-core dev machine (E=160, N=8): equal at 10 KiB, shared memory 0.1 ms
# faster at 42 KiB, 0.4 ms at 168 KiB, 3.7 ms at 656 KiB (1,000 candidates); gRPC grows faster.
DEFAULT_SHM_THRESHOLD_BYTES = 64 << 10
_SHM_ALIGNMENT = 64
_region_ids = itertools.count()
# gRPC waits 1 s, then 1.6x longer each time (up to 120 s), before it reconnects to a server
# that went away: after a 5 s outage the channel could stay down seconds after the server is
# back. A loopback reconnect costs microseconds, so try every 100 ms up to 1 s apart.
_RECONNECT_BACKOFF_MS = {"initial": 100, "min": 100, "max": 1000}


def _channel_args() -> list[tuple[str, int]]:
    """tritonclient's default channel options, with gRPC's reconnect backoff shortened."""
    keepalive = grpcclient.KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", 2**31 - 1),
        ("grpc.max_receive_message_length", 2**31 - 1),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        *((f"grpc.{kind}_reconnect_backoff_ms", ms) for kind, ms in _RECONNECT_BACKOFF_MS.items()),
    ]


class RankerClientError(RuntimeError):
    """A ranker request failed; ``status`` is the gRPC status name (e.g. ``INVALID_ARGUMENT``)."""

    def __init__(self, message: str, status: str = "") -> None:
        super().__init__(message)
        self.status = status


class RankerTimeoutError(RankerClientError):
    """The request did not finish within the client's deadline."""


class RankerUnavailableError(RankerClientError):
    """The server stayed unreachable through every retry."""


class RankerOutputs(NamedTuple):
    """Per-candidate probabilities, fp32 ``[B]`` each; pCTCVR = ``p_ctr * p_cvr``. A rate whose
    head the model was not trained for (not among its config's outputs) is None."""

    p_ctr: np.ndarray
    p_cvr: np.ndarray | None
    p_neg: np.ndarray | None


@dataclass
class _Region:
    """One registered system shared-memory region of the pool."""

    name: str
    handle: Any
    byte_size: int


class _SharedMemoryPool:
    """Regions registered with the server, reused across calls (one per concurrent call)."""

    def __init__(self, client: grpcclient.InferenceServerClient, timeout_s: float) -> None:
        from tritonclient.utils import shared_memory  # imported only when shm is used

        self._shm = shared_memory
        self._client = client
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._free: list[_Region] = []
        self._all: list[_Region] = []
        self._retired = False

    def acquire(self, byte_size: int) -> _Region:
        with self._lock:
            for i, region in enumerate(self._free):
                if region.byte_size >= byte_size:
                    return self._free.pop(i)
        # Round up so that slightly larger requests reuse the region.
        size = max(1 << 20, 1 << (byte_size - 1).bit_length())
        name = f"adrank_{os.getpid()}_{next(_region_ids)}"
        handle = self._shm.create_shared_memory_region(name, "/" + name, size, create_only=True)
        try:
            self._client.register_system_shared_memory(
                name, "/" + name, size, client_timeout=self._timeout_s
            )
        except BaseException:
            self._shm.destroy_shared_memory_region(handle)
            raise
        region = _Region(name, handle, size)
        with self._lock:
            self._all.append(region)
        return region

    def release(self, region: _Region) -> None:
        with self._lock:
            if not self._retired:
                self._free.append(region)
                return
            self._all.remove(region)
        self._destroy([region])

    def retire(self) -> None:
        """Stop reusing this pool's regions: free the idle ones now, the busy ones on release.

        Called after a failed call: a restarted server no longer knows our regions, and a new
        pool registers fresh ones. Busy regions stay mapped until their call is done with them.
        """
        with self._lock:
            self._retired = True
            idle, self._free = self._free, []
            self._all = [r for r in self._all if r not in idle]
        self._destroy(idle)

    def write(self, region: _Region, arrays: list[np.ndarray]) -> list[int]:
        """Copy ``arrays`` into ``region`` at aligned offsets; returns the offsets."""
        offsets, offset = [], 0
        for array in arrays:
            offsets.append(offset)
            offset += -(-array.nbytes // _SHM_ALIGNMENT) * _SHM_ALIGNMENT
        for array, start in zip(arrays, offsets, strict=True):
            self._shm.set_shared_memory_region(region.handle, [array], offset=start)
        return offsets

    def close(self) -> None:
        with self._lock:
            regions, self._all, self._free = self._all, [], []
        self._destroy(regions)

    def _destroy(self, regions: list[_Region]) -> None:
        for region in regions:
            # The server may be gone; the memory is ours to free either way.
            with contextlib.suppress(InferenceServerException):
                self._client.unregister_system_shared_memory(region.name, client_timeout=1.0)
            self._shm.destroy_shared_memory_region(region.handle)


def _is_loopback(url: str) -> bool:
    host = url.rpartition(":")[0] or url
    return host.startswith(_LOOPBACK_HOSTS)


def _status_name(error: InferenceServerException) -> str:
    status = error.status() or ""
    return status.rsplit(".", 1)[-1]


class RankerClient:
    """Calls the ranker model on a Triton server over gRPC.

    Parameters
    ----------
    url
        ``host:port`` of Triton's gRPC endpoint (``EmbeddedTriton.grpc_url``).
    model, model_version
        The model to call; ``""`` means the server's latest loaded version.
    timeout_s
        Deadline of each attempt, in seconds.
    retries
        Extra attempts after an ``UNAVAILABLE`` answer, ``backoff_s * 2**i`` apart.
    shm_threshold_bytes
        Inputs of at least this many bytes go through system shared memory. ``None`` (default)
        means ``DEFAULT_SHM_THRESHOLD_BYTES`` for a loopback ``url`` and never otherwise (shared
        memory needs the server on the same host); ``0`` always; a negative value never.

    Examples
    --------
    >>> client = RankerClient("127.0.0.1:8001")  # doctest: +SKIP
    >>> out = client.predict(embeddings, dense)  # fp32 [B, E] and [B, N]  # doctest: +SKIP
    >>> pctcvr = out.p_ctr * out.p_cvr  # doctest: +SKIP
    """

    def __init__(
        self,
        url: str,
        *,
        model: str = "ranker",
        model_version: str = "",
        timeout_s: float = 1.0,
        retries: int = 2,
        backoff_s: float = 0.05,
        shm_threshold_bytes: int | None = None,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        if not backoff_s >= 0:
            raise ValueError(f"backoff_s must be >= 0, got {backoff_s}")
        if shm_threshold_bytes is None:
            shm_threshold_bytes = DEFAULT_SHM_THRESHOLD_BYTES if _is_loopback(url) else -1
        self.url = url
        self.model = model
        self.model_version = model_version
        self.timeout_s = float(timeout_s)
        self.retries = retries
        self.backoff_s = float(backoff_s)
        self.shm_threshold_bytes = shm_threshold_bytes
        self._client = grpcclient.InferenceServerClient(url, channel_args=_channel_args())
        self._pool_lock = threading.Lock()
        # A list so that the finalizer (which must not hold self) sees the pool made later.
        self._pool_holder: list[_SharedMemoryPool | None] = [None]
        self._finalizer = weakref.finalize(
            self, RankerClient._release, self._client, self._pool_holder
        )

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> RankerClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Unregister and free the shared-memory regions and close the channel."""
        self._finalizer()

    @staticmethod
    def _release(client: grpcclient.InferenceServerClient, pool_holder: list) -> None:
        pool = pool_holder[0]
        if pool is not None:
            pool.close()
        client.close()

    # -- server state ----------------------------------------------------------------------

    def is_ready(self) -> bool:
        """Whether the server answers and the model is ready (never raises)."""
        try:
            return bool(
                self._client.is_model_ready(
                    self.model, self.model_version, client_timeout=self.timeout_s
                )
            )
        except InferenceServerException:
            return False

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Block until the model is ready; ``RankerUnavailableError`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not self.is_ready():
            if time.monotonic() > deadline:
                raise RankerUnavailableError(
                    f"model {self.model!r} at {self.url} not ready after {timeout_s:g} s",
                    "UNAVAILABLE",
                )
            time.sleep(0.05)

    def signature(self) -> RankerSignature:
        """The model's input widths and batch limit, read from the server's config."""
        response = self._call(
            lambda: self._client.get_model_config(
                self.model, self.model_version, as_json=False, client_timeout=self.timeout_s
            )
        )
        try:
            return ranker_signature(response.config)
        except ValueError as error:
            raise RankerClientError(f"{self.url}: {error}", "FAILED_PRECONDITION") from None

    # -- inference -------------------------------------------------------------------------

    def predict(self, embeddings: np.ndarray, dense: np.ndarray) -> RankerOutputs:
        """Score ``B`` candidates.

        Parameters
        ----------
        embeddings : fp32 ``[B, E]``, the pooled embeddings of every sparse field in schema order.
        dense : fp32 ``[B, N]``, the dense numeric features.

        Returns
        -------
        RankerOutputs with ``p_ctr``, ``p_cvr``, ``p_neg``, fp32 ``[B]`` each (None for a task
        the model was not trained on).

        Raises
        ------
        ValueError if the inputs are not 2-D with the same ``B >= 1`` (checked here);
        RankerClientError with Triton's message if the server rejects them (wrong width, batch
        above ``max_batch_size``, the model failed); RankerTimeoutError; RankerUnavailableError.
        """
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        dense = np.ascontiguousarray(dense, dtype=np.float32)
        for name, array in [("embeddings", embeddings), ("dense", dense)]:
            if array.ndim != 2:
                raise ValueError(f"{name} must be 2-D [B, width], got shape {array.shape}")
        if embeddings.shape[0] != dense.shape[0]:
            raise ValueError(
                f"embeddings and dense must have the same number of rows, "
                f"got {embeddings.shape[0]} and {dense.shape[0]}"
            )
        if embeddings.shape[0] == 0:
            raise ValueError("embeddings and dense must have at least one row, got 0")

        inputs = [
            grpcclient.InferInput(INPUT_EMBEDDINGS, list(embeddings.shape), "FP32"),
            grpcclient.InferInput(INPUT_DENSE, list(dense.shape), "FP32"),
        ]
        nbytes = embeddings.nbytes + dense.nbytes
        if 0 <= self.shm_threshold_bytes <= nbytes:
            pool = self._shared_memory()
            try:  # registering a new region is a call to the server too: it may be down
                region = self._call(lambda: pool.acquire(nbytes + _SHM_ALIGNMENT))
            except RankerClientError as error:
                if not isinstance(error, RankerTimeoutError):
                    self._retire_pool(pool)
                raise
            try:
                offsets = pool.write(region, [embeddings, dense])
                for infer_input, array, offset in zip(
                    inputs, [embeddings, dense], offsets, strict=True
                ):
                    infer_input.set_shared_memory(region.name, array.nbytes, offset)
                result = self._infer(inputs)
            except RankerClientError as error:
                if not isinstance(error, RankerTimeoutError):
                    self._retire_pool(pool)  # the server may have restarted without our regions
                raise
            finally:
                pool.release(region)
        else:
            inputs[0].set_data_from_numpy(embeddings)
            inputs[1].set_data_from_numpy(dense)
            result = self._infer(inputs)
        # A model serves its trained heads only: a rate it does not predict comes back None.
        arrays = (result.as_numpy(name) for name in OUTPUT_NAMES)
        return RankerOutputs(*(None if a is None else a.reshape(-1) for a in arrays))

    def _infer(self, inputs: list[grpcclient.InferInput]) -> Any:
        # No requested outputs: the server returns every output the model declares.
        return self._call(
            lambda: self._client.infer(
                self.model,
                inputs,
                model_version=self.model_version,
                client_timeout=self.timeout_s,
            )
        )

    def _call(self, request: Any) -> Any:
        for attempt in range(self.retries + 1):
            try:
                return request()
            except InferenceServerException as error:
                status = _status_name(error)
                message = f"{self.model!r} at {self.url}: {error.message()}"
                if status == "DEADLINE_EXCEEDED":
                    raise RankerTimeoutError(
                        f"{message} (deadline {self.timeout_s:g} s)", status
                    ) from None
                if status != "UNAVAILABLE":
                    raise RankerClientError(message, status) from None
                if attempt == self.retries:
                    raise RankerUnavailableError(
                        f"{message} (after {self.retries + 1} attempts)", status
                    ) from None
                time.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    def _retire_pool(self, pool: _SharedMemoryPool) -> None:
        with self._pool_lock:
            if self._pool_holder[0] is pool:
                self._pool_holder[0] = None
        pool.retire()

    def _shared_memory(self) -> _SharedMemoryPool:
        with self._pool_lock:
            if self._pool_holder[0] is None:
                self._pool_holder[0] = _SharedMemoryPool(self._client, self.timeout_s)
            return self._pool_holder[0]
