"""Fixtures shared by the test files."""
import pytest
import torch


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
