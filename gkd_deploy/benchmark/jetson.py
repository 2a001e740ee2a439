"""NVIDIA Jetson: which board, its power mode and clock state, and board power from tegrastats.

A Jetson's latency depends on its power mode (`nvpmodel`) and on whether `jetson_clocks` pinned
the clocks to their maximum; a benchmark that does not say both cannot be compared with another.
So the report records them, and, where `tegrastats` is on PATH, samples it during the timed runs
for the mean board power and the energy per image.

Rails as the boards print them (current/average, in mW; older boards without the unit):

    Orin NX / Nano:   VDD_IN 5124mW/5124mW VDD_CPU_GPU_CV 1156mW/1156mW VDD_SOC 1475mW/1475mW
    AGX Orin:         VDD_GPU_SOC 2398mW/2398mW VDD_CPU_CV 799mW/799mW VIN_SYS_5V0 3627mW/3627mW
    AGX Xavier:       GPU 0mW/0mW CPU 397mW/397mW SOC 1190mW/1190mW CV 0mW/0mW SYS5V 1830mW/1830mW
    Nano:             POM_5V_IN 2166/2166 POM_5V_GPU 0/0 POM_5V_CPU 442/442
    TX2 / Xavier NX:  VDD_IN 3007/3007 VDD_CPU 229/229 VDD_GPU 76/76 VDD_SOC 535/535

The board's total is its input rail (`VDD_IN`, `POM_5V_IN`) where it has one; otherwise (AGX
Orin, AGX Xavier) the sum of the rails it reports, as jtop computes it. On AGX Orin
`VIN_SYS_5V0` is one of the three module rails, not the input, so it is summed, not taken alone.

File roots and the PATH searched for the commands are arguments, so tests can fake a board.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import fmean

log = logging.getLogger(__name__)

TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
_L4T = re.compile(r"R(\d+) \(release\), REVISION: ([\d.]+)")
_FREQS = re.compile(r"^(GPU|cpu\d+):?\s.*?MinFreq=(\d+) MaxFreq=(\d+)", re.MULTILINE)
_ONLINE = re.compile(r"^(cpu\d+): Online=0", re.MULTILINE)
ROOT_HINT = "unknown (needs root: sudo jetson_clocks --show)"


@dataclass(frozen=True)
class JetsonInfo:
    """`clocks`: "fixed: ...", "dynamic: ..." or "unknown (...)"; `tegrastats`: its path, if on PATH."""

    model: str
    l4t: str | None
    power_mode: str | None
    clocks: str
    tegrastats: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def _read(path: Path) -> str | None:
    try:
        return path.read_bytes().decode(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def _run(command: str, arguments: list[str], path: str | None, timeout: float) -> tuple[int, str] | None:
    """(exit code, stdout + stderr) of a command found on `path`, or None when it is not there."""
    executable = shutil.which(command, path=path)
    if executable is None:
        return None
    try:
        done = subprocess.run([executable, *arguments], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as error:
        return 1, str(error)
    return done.returncode, done.stdout + done.stderr


def parse_l4t_release(text: str) -> str | None:
    """'# R36 (release), REVISION: 3.0, ...' -> '36.3.0'."""
    match = _L4T.search(text)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def parse_power_mode(text: str) -> str | None:
    """`nvpmodel -q` prints 'NV Power Mode: MAXN' and the mode number on the next line."""
    lines = [line.strip() for line in text.splitlines()]
    for index, line in enumerate(lines):
        if line.startswith("NV Power Mode:"):
            name = line.split(":", 1)[1].strip()
            number = lines[index + 1] if index + 1 < len(lines) and lines[index + 1].isdigit() else None
            return f"{name} (mode {number})" if number is not None else name
    return None


def parse_clock_state(text: str) -> str:
    """`jetson_clocks --show`: clocks are fixed when every online CPU and the GPU have MinFreq = MaxFreq
    (what `jetson_clocks` sets); the GPU's range is given either way."""
    offline = set(_ONLINE.findall(text))
    ranges = {name: (int(low), int(high)) for name, low, high in _FREQS.findall(text) if name not in offline}
    if not ranges:
        return ROOT_HINT
    fixed = all(low == high for low, high in ranges.values())
    gpu = ranges.get("GPU")
    gpu_text = "" if gpu is None else (f", GPU {gpu[1] / 1e6:.0f} MHz" if fixed
                                       else f", GPU {gpu[0] / 1e6:.0f}-{gpu[1] / 1e6:.0f} MHz")
    return (f"fixed (jetson_clocks){gpu_text}" if fixed
            else f"dynamic{gpu_text}; run sudo jetson_clocks to fix them")


def detect_jetson(root: Path = Path("/"), path: str | None = None, timeout: float = 10.0) -> JetsonInfo | None:
    """The Jetson this runs on, or None on any other machine. `path` is the PATH searched for
    nvpmodel, jetson_clocks and tegrastats (default: the process's)."""
    release = _read(root / "etc" / "nv_tegra_release")
    model = _read(root / "proc" / "device-tree" / "model")
    if release is None and not (model and "jetson" in model.lower()):
        return None
    power = _run("nvpmodel", ["-q"], path, timeout)
    clocks = _run("jetson_clocks", ["--show"], path, timeout)
    if clocks is None:
        clock_state = "unknown (jetson_clocks not found)"
    else:
        clock_state = parse_clock_state(clocks[1]) if clocks[0] == 0 else ROOT_HINT
    return JetsonInfo(
        model=model or "NVIDIA Jetson (model unknown)",
        l4t=parse_l4t_release(release) if release else None,
        power_mode=parse_power_mode(power[1]) if power is not None and power[0] == 0 else None,
        clocks=clock_state,
        tegrastats=shutil.which("tegrastats", path=path),
    )


def parse_rails(line: str) -> dict[str, int]:
    """Current power (mW) of every rail in one tegrastats line."""
    return {name: int(current) for name, current, _average in _RAIL.findall(line)}


def board_power_mw(rails: dict[str, int]) -> int | None:
    for name in TOTAL_RAILS:
        if name in rails:
            return rails[name]
    return sum(rails.values()) if rails else None


class TegrastatsSampler:
    """Runs `tegrastats --interval N` while entered and keeps the lines it prints."""

    def __init__(self, executable: str, interval_ms: int = 100) -> None:
        self.command = [executable, "--interval", str(interval_ms)]
        self.lines: list[str] = []
        self.process: subprocess.Popen | None = None
        self.reader: threading.Thread | None = None

    def __enter__(self) -> "TegrastatsSampler":
        self.lines = []
        try:
            self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                            text=True, bufsize=1)
        except OSError as error:
            log.warning("cannot start %s: %s; no power figures", self.command[0], error)
            return self
        self.reader = threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True)
        self.reader.start()
        return self

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def __exit__(self, *exc_info) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.reader is not None:
            self.reader.join(timeout=5)

    @property
    def mean_power_w(self) -> float | None:
        """Mean board power over the lines read, in W; None when no line had power rails."""
        totals = [total for total in (board_power_mw(parse_rails(line)) for line in self.lines) if total is not None]
        return fmean(totals) / 1000 if totals else None
