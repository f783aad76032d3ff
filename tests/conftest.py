"""Test-wide settings. SELFSPEC_TEST_DEVICE=cuda (scripts/gpu_check.sh) makes new tensors
default to the GPU, so the same tests check the engine there."""

import torch

from tests.model_helpers import DEVICE

pytest_plugins = ("tests.db_backends",)  # db_url, db, pg_server: both database backends

if DEVICE != "cpu":
    torch.set_default_device(DEVICE)
