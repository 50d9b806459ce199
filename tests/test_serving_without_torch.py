"""A serving process ranks without loading torch: the model runs in Triton, not here.

torch's thread pool and the kernels' can stall each other on a small machine, and torch costs
a serving process hundreds of MB for nothing. The check runs in a fresh interpreter: the whole
serving stack (embedded Triton, the Ranker over an export, the HTTP app) ranks a request, and
``torch`` must not be in ``sys.modules`` afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.triton

SERVE_ONE_REQUEST = """
import json, sys
from pathlib import Path

import adrank.service
from adrank.service.stack import serving_stack
from adrank.workspace import open_workspace, sample_requests

root = Path(sys.argv[1])
workspace = open_workspace(root, repository=root / "models")
request = sample_requests(workspace, 1, candidates=100, k=5, seed=1)[0]
with serving_stack(
    workspace.artifacts_dir, workspace.catalog_path, repository=workspace.repository
) as stack:
    response = stack.ranker.rank(request)
print(json.dumps({"torch": "torch" in sys.modules, "ranked": len(response)}))
"""


def test_the_serving_stack_ranks_without_importing_torch(serving_workspace) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SERVE_ONE_REQUEST, str(serving_workspace.root)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ranked"] > 0
    assert result["torch"] is False
