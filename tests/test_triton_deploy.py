"""An exported repository deploys as is: served from a Python environment without adrank.

The environment holds only what the version's ``requirements.txt`` names (numpy, ONNX Runtime,
torch and their dependencies), linked from the test's own environment (a virtual environment of
the base interpreter, so it costs well under a second instead of a pip install of torch), and
reaches the stub through Triton's ``EXECUTION_ENV_PATH`` (a directory with ``bin/activate``).
A ``.pth`` file in it leaves a marker when an interpreter starts there, which proves the stub ran
in it. The answers are compared with the training-time module.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path

import numpy as np
import pytest
import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from adrank.data import SyntheticConfig, generate_log
from adrank.export import export_model
from adrank.features import FeaturePipeline, load_schema
from adrank.training.loop import TrainConfig, to_torch, train
from adrank.triton import RankerClient
from adrank.triton.model_config import DEFAULT_DEPLOYMENT
from adrank.triton.testing import serve_ranker
from reference import pooled_embeddings_ref

RUNTIME_PACKAGES = ["numpy", "onnxruntime", "torch"]  # requirements.txt of a version


def link_environment(target: Path, packages: list[str], marker: Path) -> set[str]:
    """A virtual environment of the base interpreter at ``target`` holding ``packages`` and their
    dependencies (symlinks into this environment's site-packages); returns their names."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(target)], check=True)
    [site] = (target / "lib").glob("python*/site-packages")
    linked: set[str] = set()
    todo = list(packages)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in linked:
            continue
        linked.add(name)
        dist = distribution(name)
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
        for root in {Path(str(f)).parts[0] for f in dist.files or []} - {"..", "__pycache__"}:
            source = Path(str(dist.locate_file(root)))
            if source.exists() and not (site / root).exists():
                (site / root).symlink_to(source)
    (site / "zz_marker.pth").write_text(f"import pathlib; pathlib.Path({str(marker)!r}).touch()\n")
    return linked


@pytest.fixture(scope="session")
def adrank_free_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("adrank_free")
    marker = root / "interpreter-started"
    linked = link_environment(root / "env", RUNTIME_PACKAGES, marker)
    assert "adrank" not in linked
    python = str(root / "env" / "bin" / "python")
    probe = subprocess.run(
        [python, "-c", "import numpy, onnxruntime, torch; import adrank"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "No module named 'adrank'" in probe.stderr, probe.stderr
    marker.unlink()
    return root / "env", marker


def test_the_environment_cannot_import_adrank(adrank_free_env):
    env, marker = adrank_free_env
    python = str(env / "bin" / "python")
    result = subprocess.run([python, "-c", "import adrank"], capture_output=True, check=False)
    assert result.returncode != 0
    assert (env / "bin" / "activate").is_file()  # what Triton sources
    assert marker.exists()
    marker.unlink()


@pytest.fixture(scope="module")
def trained():
    world = SyntheticConfig(num_advertisers=5, num_campaigns=10, num_creatives=40, num_users=500)
    log = generate_log(6000, seed=7, config=world).impressions
    result = train(log, load_schema(), config=TrainConfig(seed=0))
    rows = FeaturePipeline(result.model.schema)(log.take(result.heldout_rows[:300]))
    return result.model, rows


@pytest.mark.triton
def test_an_exported_repository_serves_without_adrank(adrank_free_env, trained, tmp_path):
    env, marker = adrank_free_env
    model, rows = trained
    repository = tmp_path / "models"
    export = export_model(
        model,
        repository=repository,
        artifacts=tmp_path / "artifacts",
        execution_env_path=str(env),
    )
    # A second model: the TorchScript variant of the same version, in the same environment.
    torch_dir = repository / "ranker_torch"
    shutil.copytree(export.version_dir, torch_dir / "1")
    config = (export.model_dir / "configs" / "python_torch_fp32.pbtxt").read_text()
    (torch_dir / "config.pbtxt").write_text(config.replace('"ranker"', '"ranker_torch"'))
    assert f'string_value: "{env}"' in (export.model_dir / "config.pbtxt").read_text()

    tables = {name: w.detach().numpy() for name, w in model.sparse.tables.items()}
    embeddings = pooled_embeddings_ref(tables, model.schema, rows)
    with torch.no_grad():
        expected = [t.numpy().ravel() for t in model(*to_torch(rows)).values()]
    with serve_ranker(repository) as (server, default):
        answers = {DEFAULT_DEPLOYMENT: default.predict(embeddings, rows.dense)}
        with RankerClient(server.grpc_url, model="ranker_torch", timeout_s=30) as client:
            answers["python_torch_fp32"] = client.predict(embeddings, rows.dense)
    assert marker.exists()  # the stubs started in the adrank-free environment
    bounds = {DEFAULT_DEPLOYMENT: 0.02, "python_torch_fp32": 1e-5}
    for deployment, served in answers.items():
        for task, want, got in zip(model.tasks, expected, served, strict=True):
            assert float(np.abs(want - got).max()) <= bounds[deployment], (deployment, task)
