"""GPU adapters: the ones wgpu sees, and how to pick one (``RUSTBP_GPU_ADAPTER``)."""

from __future__ import annotations

from dataclasses import dataclass

from . import _rustbp

__all__ = ["GpuDevice", "gpu_devices"]


@dataclass(frozen=True)
class GpuDevice:
    """One GPU adapter; ``is_software`` marks a CPU implementation such as lavapipe."""

    name: str
    backend: str
    device_type: str
    is_software: bool


def gpu_devices() -> list[GpuDevice]:
    """The GPU adapters wgpu sees, best first (hardware before software); empty when there are none.

    ``device="gpu"`` uses the first, or the first whose name contains the environment variable
    ``RUSTBP_GPU_ADAPTER`` (case-insensitive). Raises GpuUnavailableError if this build has no GPU path.
    """
    return [GpuDevice(**d) for d in _rustbp.gpu_devices()]
