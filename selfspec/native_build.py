"""Building our native kernels: the sources, the compiler flags, whether this machine
can run them, and the compiled library in the selfspec cache folder.

Built with the system C compiler, once per source version (the file name is a hash of
the sources and flags): the compiler writes a private file, which is loaded once as a
test and then renamed into place under a file lock, so concurrent builders (threads or
processes) never leave a half-written library. `selfspec.native` loads it and calls it.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

from selfspec.cache import cache_root

__all__ = ["CSRC", "SOURCES", "FLAGS", "cpu_flags", "unsupported_reason", "build"]

CSRC = Path(__file__).with_name("csrc")
SOURCES = (
    CSRC / "engine.c",
    CSRC / "quant.h",
    CSRC / "blocks.h",
    CSRC / "dot8.h",
    CSRC / "pool.h",
)
# -ffp-contract=off: no multiply-add is fused unless the source says so, so a scalar
# remainder and a vectorised body round alike.
FLAGS = ["-O3", "-mavx2", "-mfma", "-mf16c", "-ffp-contract=off", "-pthread", "-shared", "-fPIC"]
REQUIRED_FLAGS = ("avx2", "fma", "f16c")


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def unsupported_reason() -> str | None:
    if os.environ.get("SELFSPEC_KERNEL", "1") == "0":
        return "switched off by SELFSPEC_KERNEL=0"
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return f"no native path for {platform.machine()} (it needs x86-64 with AVX2, FMA, F16C)"
    missing = [f for f in REQUIRED_FLAGS if f not in cpu_flags()]
    if missing:
        return f"this CPU lacks {', '.join(missing)}"
    if not (os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")):
        return "no C compiler (cc or gcc) on PATH"
    return None


def build() -> Path:
    """Compile the library once per source version (see the module docstring)."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in SOURCES) + " ".join(FLAGS).encode())
    folder = cache_root() / "kernels"
    target = folder / f"selfspec-{digest.hexdigest()[:16]}.so"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():  # another process built it while we waited
            return target
        tmp = target.with_name(f"{target.stem}.{os.getpid()}.{id(lock):x}.tmp.so")
        try:
            subprocess.run(
                [compiler, *FLAGS, f"-I{CSRC}", str(SOURCES[0]), "-o", str(tmp), "-lm"],
                check=True,
                capture_output=True,
                text=True,
            )
            ctypes.CDLL(str(tmp))  # a library that does not load is never installed
            os.replace(tmp, target)
        except subprocess.CalledProcessError as err:
            raise RuntimeError(f"compiling engine.c failed: {err.stderr.strip()[:500]}") from err
        finally:
            tmp.unlink(missing_ok=True)
    return target
