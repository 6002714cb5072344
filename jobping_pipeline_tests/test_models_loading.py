"""The model resource: offline loading, reuse within a process, clear errors."""

import os
import subprocess
import sys

import numpy as np
import pytest

from jobping_pipeline.models import ModelSpec, load_encoder
from jobping_pipeline.models.torch_backend import resolve_device
from jobping_pipeline.settings import ConfigError

# Any attempt to open a network connection (a model hub, say) raises inside this script.
OFFLINE_LOAD = """
import socket
def refuse(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        raise RuntimeError(f"network access attempted: {address}")
    return real_connect(self, address)
real_connect = socket.socket.connect
socket.socket.connect = refuse
from jobping_pipeline.models import ModelSpec, load_encoder
encoder = load_encoder(ModelSpec())
vectors = encoder.encode(["Graduate data analyst in Berlin"], batch_size=1)
print(encoder.dimensions, vectors.shape, round(float((vectors[0] ** 2).sum()), 4))
"""


@pytest.mark.parametrize("hub_offline", [None, "1"])
def test_bundled_model_loads_without_touching_the_network(hub_offline):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "TRANSFORMERS_"))}
    if hub_offline:
        env["HF_HUB_OFFLINE"] = hub_offline
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_LOAD], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "384 (1, 384) 1.0"


def test_model_is_loaded_once_per_process(encoder):
    assert load_encoder(ModelSpec()) is encoder
    assert encoder.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert ModelSpec(max_seq_length=128).model_id == "sentence-transformers/all-MiniLM-L6-v2@128"


def test_vectors_are_unit_length_and_in_order(encoder):
    texts = ["Nurse in Lyon", "Backend engineer (Go) in Warsaw", "Nurse in Lyon"]
    vectors = encoder.encode(texts, batch_size=2)
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors[0], vectors[2], atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1], atol=1e-2)


def test_a_model_that_cannot_be_loaded_offline_names_the_setting(tmp_path):
    with pytest.raises(ConfigError, match="JOBPING_MODEL='no-such-org/no-such-model' could not be loaded offline"):
        load_encoder(ModelSpec(name="no-such-org/no-such-model"))
    with pytest.raises(ConfigError, match="JOBPING_MODEL"):
        load_encoder(ModelSpec(name=str(tmp_path / "empty-folder")))


def test_auto_device_is_cpu_here():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"


def test_auto_device_takes_the_gpu_with_most_free_memory(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == "cuda"
    free_bytes = {0: 2 << 30, 1: 9 << 30, 2: 4 << 30}
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index: (free_bytes[index], 16 << 30))
    assert resolve_device("auto") == "cuda:1"
