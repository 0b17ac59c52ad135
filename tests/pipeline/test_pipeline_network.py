"""Every block checks that it sees the run directory (the loopback-only check runs in the Ctrl-C test)."""
from __future__ import annotations

import pytest


def test_a_block_that_does_not_see_the_run_directory_says_so(tmp_path):
    from sedona_runtime.pipeline.config import PipelineConfig
    from sedona_runtime.pipeline.placement import Placement
    from sedona_runtime.pipeline.rendezvous import Meeting
    from sedona_runtime.pipeline.worker import Stage
    from sedona_runtime.utils.errors import SedonaError

    stage = Stage(PipelineConfig(blocks=2), 2, 3, Meeting(), Placement(rank=2))
    token = tmp_path / ".pipeline-token"
    token.write_text("abc")
    stage.setup = {"token": {"path": str(token), "value": "abc"}}
    stage._check_shared_directory(str(tmp_path))  # sees it: fine
    stage.setup = {"token": {"path": str(tmp_path / "elsewhere" / ".pipeline-token"), "value": "abc"}}
    with pytest.raises(SedonaError, match=r"does not see the run directory .* \(no shared filesystem\?\)"):
        stage._check_shared_directory(str(tmp_path))
