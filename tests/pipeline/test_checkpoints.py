"""The pipeline's checkpoint files: promoting the best weights never touches later steps'; what a stop leaves."""
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


def test_a_second_stop_signal_names_the_last_committed_checkpoint(tmp_path):
    """Stopped at once (a second signal, no checkpoint of the current step): the line says which
    checkpoint is kept, or that none is, never a resume hint with nothing to resume."""
    import signal
    from types import SimpleNamespace

    from sedona_runtime.pipeline.coordinator import Coordinator
    from sedona_runtime.training.run_dir import RunDir
    from sedona_runtime.utils.interrupt import StopRequest

    run = RunDir(tmp_path / "run")
    run.checkpoints.mkdir(parents=True)
    stop = StopRequest()
    stop.signum = signal.SIGTERM
    fake = SimpleNamespace(run_dir=run)
    none = Coordinator._stopped_at_once(fake, stop)
    assert "no checkpoint had been committed, nothing to resume" in str(none) and none.exit_code == 143
    for block in (1, 2):
        path = ckpt.block_path(run.checkpoints, 6, block)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({}, path)
    ckpt.commit(run.checkpoints, 6, 2)
    kept = Coordinator._stopped_at_once(fake, stop)
    assert f"the last committed checkpoint is step 6 in {run.checkpoints}" in str(kept)
    assert f"--resume --out {run.path}" in str(kept) and kept.exit_code == 143
