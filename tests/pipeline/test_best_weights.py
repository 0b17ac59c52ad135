"""The pipeline's best weights: promoting a validation step's candidates never touches later steps'."""
from __future__ import annotations

import torch

from sedona_runtime.pipeline import checkpoints as ckpt


def test_promoting_a_step_keeps_the_candidates_blocks_already_wrote_for_later_steps(tmp_path):
    # Block 1 runs ahead of the coordinator's counting: when validation step 4 is counted and promoted,
    # it may have written its weights for steps 6 and 8 already. Deleting them made step 6's promotion fail
    # ("best weights of step 6 lack block(s) [1]") or a block's write fail mid-run.
    for step in (2, 4, 6, 8):
        for block in (1, 2) if step < 8 else (1,):
            ckpt.save_candidate(tmp_path, step, block, {"w": torch.full((1,), float(step))})
    ckpt.promote_best(tmp_path, 4, 2, 0.5)
    left = sorted(d.name for d in (tmp_path / ckpt.CANDIDATES).iterdir())
    assert left == ["step_00000004", "step_00000006", "step_00000008"]  # the earlier one is gone
    ckpt.promote_best(tmp_path, 6, 2, 0.25)
    states, step, err = ckpt.best_weights(tmp_path)
    assert (step, err) == (6, 0.25) and float(states[0]["w"]) == 6.0
    ckpt.drop_candidate(tmp_path, 8)
    assert sorted(d.name for d in (tmp_path / ckpt.CANDIDATES).iterdir()) == ["step_00000006"]
