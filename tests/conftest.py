"""Fixtures shared by the test files."""
import os

# every process a test starts (recipes, `vavl` commands, benchmarks' smoke runs) computes on one thread unless a
# test says otherwise: their models are tiny, and two threads per process on a machine whose cores the test
# workers already fill can stall each other (a 1 s smoke training step was seen taking 10-20 s with another job
# on the second core)
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_runtest_setup(item):
    """Fail a grouped test when `--dist loadgroup` did not group it: the tests that start several processes would
    run side by side on both workers, and the shared setups (the wheel, the fresh-process models) twice.
    pytest-xdist marks a grouped test by adding `@group` to its node id; pytest 9.2 ignores that write."""
    if item.config.getoption("loadgroup", default=False) and item.get_closest_marker("xdist_group") is not None:
        if "@" not in item.nodeid:
            pytest.fail(
                f"pytest-xdist did not put {item.nodeid} in its xdist_group: this pytest / pytest-xdist pair does "
                'not support --dist loadgroup; install the tested versions: pip install -c constraints.txt -e ".[test]"',
                pytrace=False,
            )


@pytest.fixture
def one_thread():
    """Tiny models train fastest on one thread (and do not fight the other test worker)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_full_model_dir(tmp_path_factory) -> str:
    """tiny_encoders.tiny_full_model saved once per test process (predict, pipeline and malformed-media tests)."""
    from tiny_encoders import tiny_full_model

    root = tmp_path_factory.mktemp("tiny_full")
    tiny_full_model(root).save_pretrained(root / "model")
    return str(root / "model")
