"""Data-parallel training through torchrun: two CPU processes (gloo) train one model.

The trainer hands the DistributedDataParallel wrapper to the loss, so gradients are averaged
across ranks and every rank ends with the same weights; only rank 0 writes the model.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import build_tiny_bert

pytest.importorskip("datasets")
SCRIPT = Path(__file__).with_name("ddp_train.py")


@pytest.mark.parametrize("loss", ["mnrl", "cached"])
def test_two_processes_train_one_model(tmp_path: Path, loss: str) -> None:
    folder = build_tiny_bert(tmp_path / "tiny")
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(SCRIPT), str(folder), str(out), loss],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [(out / f"rank{r}.txt").read_text().split() for r in (0, 1)]
    assert ranks[0][1:] == ["2", "4"] and ranks[1][1:] == ["2", "4"]  # world size 2, 4 steps each
    assert ranks[0][0] == ranks[1][0]  # gradients were synchronised: identical weights on both ranks
    assert (out / "model" / "modules.json").is_file()
