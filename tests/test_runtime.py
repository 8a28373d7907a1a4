"""Device choice, mixed-precision switches and the out-of-memory error of neurodissect.runtime.

The CUDA branches are executed here on the CPU: device parsing with a given GPU count,
autocast + an enabled GradScaler through ``AMP_DEVICE_TYPES`` (bfloat16 on the CPU), and
a forward that raises ``torch.OutOfMemoryError`` as a full GPU would.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neurodissect import runtime
from neurodissect.errors import ConfigError, NeurodissectError
from neurodissect.provenance import current_device
from neurodissect.runtime import out_of_memory_as_error, pick_device, resolve_device


@pytest.mark.parametrize(
    ("preference", "available", "n_gpus", "expected"),
    [
        ("auto", False, 0, "cpu"),
        ("auto", True, 2, "cuda"),
        ("cpu", True, 2, "cpu"),
        ("cuda", True, 1, "cuda"),
        ("cuda:0", True, 1, "cuda:0"),
        ("cuda:3", True, 4, "cuda:3"),
        ("CUDA:1 ", True, 2, "cuda:1"),
    ],
)
def test_device_preferences_resolve_on_hosts_with_and_without_gpus(
    preference, available, n_gpus, expected
):
    assert resolve_device(preference, available, n_gpus) == expected


def test_a_gpu_ordinal_the_job_cannot_see_is_one_clear_error(monkeypatch):
    # SLURM gives the job one GPU, renumbered cuda:0: cuda:1 must fail here, not in a kernel
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    with pytest.raises(ConfigError, match=r"'cuda:1' but this job sees 1 GPU.*VISIBLE_DEVICES=5"):
        resolve_device("cuda:1", True, 1)
    with pytest.raises(ConfigError, match="not one of auto, cpu, cuda, cuda:N"):
        resolve_device("cuda:x", True, 1)
    with pytest.raises(ConfigError, match="not one of"):
        resolve_device("mps", True, 1)
    with pytest.raises(NeurodissectError, match="CUDA is not available"):
        resolve_device("cuda:0", False, 0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only host")
def test_pick_device_on_this_cpu_host():
    assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(NeurodissectError, match="CUDA is not available"):
        pick_device("cuda:1")
    # a CPU job records 'cpu' (not GPU 0's name, as it did whenever a GPU was visible)
    assert current_device() == "cpu"


class _FullGpu(nn.Module):
    def forward(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_out_of_memory_in_a_forward_becomes_one_error_naming_the_setting():
    guard = out_of_memory_as_error("training x at x.batch_size=512 on cuda", "lower x.batch_size")
    with pytest.raises(ConfigError) as info, guard:
        _FullGpu()(torch.zeros(2, 3))
    message = str(info.value)
    assert message.startswith("out of GPU memory training x at x.batch_size=512 on cuda")
    assert "lower x.batch_size" in message and "nothing is retried" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    # other errors pass through unchanged
    with pytest.raises(ValueError, match="boom"), out_of_memory_as_error("a", "b"):
        raise ValueError("boom")


def test_amp_is_off_on_the_cpu_unless_its_device_type_is_switched_on(monkeypatch):
    cpu = torch.device("cpu")
    assert not runtime.amp_enabled(cpu, True)
    assert not runtime.grad_scaler(cpu, True).is_enabled()
    with runtime.autocast(cpu, True):
        assert torch.ones(2, 2) @ torch.ones(2, 2) is not None
        assert not torch.is_autocast_enabled("cpu")
    monkeypatch.setattr(runtime, "AMP_DEVICE_TYPES", ("cuda", "cpu"))
    assert runtime.amp_enabled(cpu, True) and not runtime.amp_enabled(cpu, False)
    with runtime.autocast(cpu, True):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    scaler = runtime.grad_scaler(cpu, True)
    assert scaler.is_enabled()
    # an enabled scaler really scales the loss and unscales before the step
    w = nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.1)
    scaler.scale((w * 2).sum()).backward()
    assert w.grad[0] == 2 * scaler.get_scale()
    scaler.step(opt)
    scaler.update()
    torch.testing.assert_close(w.detach(), torch.full((3,), 0.8))
