"""What a benchmark reads besides the clock: latency percentiles and peak memory of a block of calls."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass
class Peak:
    """Peaks of a block of calls, in MiB (None where they cannot be read): the process's resident size
    on the host, and torch's CUDA allocation above its level at the start of the block."""

    host_mib: float | None = None
    gpu_mib: float | None = None


@dataclass
class Samples:
    """Latencies (seconds) of calls of ``batch`` images each, and the largest peaks seen."""

    batch: int
    seconds: list[float] = field(default_factory=list)
    peak: Peak = field(default_factory=Peak)

    def add_peak(self, peak: Peak) -> None:
        for name in ("host_mib", "gpu_mib"):
            new, old = getattr(peak, name), getattr(self.peak, name)
            if new is not None:
                setattr(self.peak, name, new if old is None else max(old, new))

    def summary(self) -> dict[str, float | None]:
        """p50/p95/p99 latency in ms, images per second over all calls, and the peaks."""
        times = np.asarray(self.seconds)
        p50, p95, p99 = np.percentile(times, [50, 95, 99]) * 1000
        return {
            "calls": len(times),
            "p50_ms": round(float(p50), 2),
            "p95_ms": round(float(p95), 2),
            "p99_ms": round(float(p99), 2),
            "images_per_s": round(self.batch * len(times) / float(times.sum()), 2),
            "peak_host_mib": None if self.peak.host_mib is None else round(self.peak.host_mib, 1),
            "peak_gpu_mib": None if self.peak.gpu_mib is None else round(self.peak.gpu_mib, 1),
        }


def _status_kib(field_name: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_host_peak() -> bool:
    """Resets the process's peak resident size (VmHWM) to its current size (Linux ≥ 4.0)."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


@contextlib.contextmanager
def peak_memory(cuda_devices: Sequence[str] = ()) -> Iterator[Peak]:
    """Measures the process's peak resident size over the block, and torch's peak CUDA allocation
    above its level at entry when torch uses ``cuda_devices``."""
    peak = Peak()
    host_ok = _reset_host_peak()
    torch = sys.modules.get("torch") if cuda_devices else None
    gpu_start = 0
    if torch is not None:
        for device in cuda_devices:
            torch.cuda.reset_peak_memory_stats(device)
        gpu_start = sum(torch.cuda.memory_allocated(device) for device in cuda_devices)
    yield peak
    host_peak = _status_kib("VmHWM")
    if host_ok and host_peak is not None:
        peak.host_mib = host_peak / 1024
    if torch is not None:
        gpu_peak = sum(torch.cuda.max_memory_allocated(device) for device in cuda_devices)
        peak.gpu_mib = max(0, gpu_peak - gpu_start) / 2**20
