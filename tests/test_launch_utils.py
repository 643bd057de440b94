"""The launcher helper of the multi-process tests leaves no process behind when it times out."""
import os
import subprocess
import sys
import time

import pytest
from launch_utils import launch


def test_a_timed_out_launch_kills_the_processes_it_started(tmp_path):
    pid_file = tmp_path / "rank.pid"
    starter = ("import subprocess, sys, time; "
               "rank = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
               f"open({str(pid_file)!r}, 'w').write(str(rank.pid)); time.sleep(120)")
    with pytest.raises(subprocess.TimeoutExpired):
        launch([sys.executable, "-c", starter], timeout=5)
    rank = int(pid_file.read_text())
    for _ in range(50):  # the orphan is reaped by init once killed
        try:
            os.kill(rank, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"rank {rank} outlived its launcher")


def test_a_launch_that_finishes_returns_its_output():
    done = launch([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"], timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
