"""What this machine's CPU is, without importing any model runtime: the facts a backend choice
depends on (and is cached under), and its peak fp32 FMA rate."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

# Runtimes whose versions change what is fastest: a new version re-measures.
RUNTIMES = ("torch", "onnxruntime", "openvino", "sentence-transformers")


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""


def _field(cpuinfo: str, name: str) -> str:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return ""


@dataclass(frozen=True)
class Cpu:
    model: str
    flags: frozenset[str]
    cores: int
    mhz: float
    vendor: str = ""

    @property
    def native_bf16(self) -> bool:
        """AVX-512 BF16 or AMX: bf16 matrix work runs natively (1.7x fp32 measured on one)."""
        return "avx512_bf16" in self.flags or "amx_bf16" in self.flags

    @property
    def fp32_flops_per_cycle(self) -> int:
        """Per core: two FMA units of 16 (AVX-512) or 8 (AVX2) fp32 lanes, 2 FLOP each. AMD's
        AVX-512 (Zen 4) runs on two 256-bit units: 32; an Intel part with one 512-bit FMA unit is
        overstated here (its % of peak reads low)."""
        if "avx512f" in self.flags and self.vendor != "AuthenticAMD":
            return 64
        if "avx2" in self.flags and "fma" in self.flags:
            return 32
        return 8

    @property
    def peak_gflops(self) -> float:
        """fp32 FMA peak of the cores this process may use, in GFLOP/s (0 when unknown)."""
        return self.cores * self.mhz / 1000 * self.fp32_flops_per_cycle


def this_cpu() -> Cpu:
    cpuinfo = _cpuinfo()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    try:
        mhz = float(_field(cpuinfo, "cpu MHz") or 0)
    except ValueError:
        mhz = 0.0
    return Cpu(
        model=_field(cpuinfo, "model name") or platform.processor() or platform.machine(),
        flags=frozenset(_field(cpuinfo, "flags").split()),
        cores=cores,
        mhz=mhz,
        vendor=_field(cpuinfo, "vendor_id"),
    )


def cpu_has_bf16() -> bool:
    return this_cpu().native_bf16


def runtime_versions() -> dict[str, str]:
    versions = {}
    for name in RUNTIMES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def gpu_may_be_present() -> bool:
    """Without importing torch: an NVIDIA driver, or macOS (mps)."""
    nvidia = Path("/proc/driver/nvidia/gpus")
    return (nvidia.is_dir() and any(nvidia.iterdir())) or Path("/dev/nvidia0").exists() or platform.system() == "Darwin"
