"""The fastest exact path on this machine, measured once, the way FFTW plans its transforms.

The first time a model is used on a CPU with ``JOBPING_BACKEND=auto`` (the moment its
conversion happens), every exact path available here is timed on a fixed sample of demo
postings of real length: torch, ONNX Runtime and OpenVINO in fp32, and torch and OpenVINO in
bf16 where the CPU runs bf16 natively. Rounds are interleaved (single runs vary by up to 30% on
shared machines) and the whole measurement is bounded in time. The winner is cached with its
figures, keyed by the model's shape (layers, widths, tokens: a fine-tuned copy shares it), the
CPU model, its flags, the cores this process may use and the runtimes' versions: any change
measures again. The int8 paths (ONNX Runtime's dynamic int8, OpenVINO's NNCF int8) are
measured on request (``jobping-pipeline backends --measure``) and listed, never chosen: a lossy
path is an opt-in (``JOBPING_QUANTIZATION=int8``), set alike on every machine of an installation
because each recipe has its own model id.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from jobping_pipeline.models.cpu import Cpu, runtime_versions, this_cpu

CHOICE_FILE = "backend-choice.json"
SAMPLE_TEXTS = 32
BUDGET_SECONDS = 45.0
MAX_ROUNDS = 3
BATCH_SIZE = 16
LOCK_WAIT_SECONDS = 600.0


@dataclass(frozen=True)
class Candidate:
    """One way to run the model: a backend at a precision (or a quantization)."""

    backend: str
    precision: str
    lossy: bool = False

    @property
    def name(self) -> str:
        return f"{self.backend} {self.precision}"


LOSSY_PATHS = (Candidate("onnx", "int8", lossy=True), Candidate("openvino", "int8", lossy=True))


def candidate_paths(cpu: Cpu, precision: str = "auto", lossy: bool = False) -> list[Candidate]:
    """The paths measured here: the exact ones (only ``precision``'s, unless auto), and with
    ``lossy`` the int8 ones, listed for their speed and never chosen (they are opt-ins)."""
    exact = [Candidate("torch", "fp32"), Candidate("onnx", "fp32"), Candidate("openvino", "fp32")]
    if cpu.native_bf16:
        exact += [Candidate("torch", "bf16"), Candidate("openvino", "bf16")]
    if precision != "auto":
        exact = [path for path in exact if path.precision == precision]
    return exact + list(LOSSY_PATHS if lossy else ())


@dataclass
class Measured:
    name: str
    backend: str
    precision: str
    lossy: bool
    texts_per_second: float
    rounds: list[float]
    x_torch_fp32: float = 0.0
    peak_percent: float = 0.0


@dataclass
class Choice:
    """What was measured, what won, and where (as stored in the cache)."""

    key: str
    chosen: str
    backend: str
    precision: str
    paths: list[Measured]
    cpu: str
    cores: int
    peak_gflops: float
    gflop_per_text: float
    seconds: float
    measured_at: str
    versions: dict[str, str] = field(default_factory=dict)


def choice_key(architecture: str, cpu: Cpu, versions: dict[str, str], precision: str) -> str:
    facts = {
        "model": architecture,
        "cpu": cpu.model,
        "flags": sorted(cpu.flags),
        "cores": cpu.cores,
        "versions": versions,
        "precision": precision,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def measure(
    encoders: dict[str, Callable[[Sequence[str], int], object]],
    texts: Sequence[str],
    *,
    clock: Callable[[], float] = time.perf_counter,
    budget_seconds: float = BUDGET_SECONDS,
    max_rounds: int = MAX_ROUNDS,
) -> dict[str, list[float]]:
    """Texts per second of each encoder, per round: each round encodes ``texts`` once with every
    encoder in turn (interleaved, so a machine that slows down slows all of them alike). Stops
    after ``max_rounds``, or once the budget is spent (at least one round)."""
    rates: dict[str, list[float]] = {name: [] for name in encoders}
    started = clock()
    for _ in range(max_rounds):
        for name, encode in encoders.items():
            before = clock()
            encode(texts, BATCH_SIZE)
            rates[name].append(len(texts) / max(clock() - before, 1e-9))
        if clock() - started >= budget_seconds:
            break
    return rates


def pick(measured: list[Measured]) -> Measured:
    """The fastest exact path (median over its rounds); a lossy path never."""
    exact = [path for path in measured if not path.lossy]
    if not exact:
        raise RuntimeError("no exact backend could run the model here")
    return max(exact, key=lambda path: path.texts_per_second)


def summarize(
    paths: list[Candidate], rates: dict[str, list[float]], peak_gflops: float, gflop_per_text: float
) -> list[Measured]:
    measured = [
        Measured(path.name, path.backend, path.precision, path.lossy, statistics.median(rates[path.name]), rates[path.name])
        for path in paths
        if rates.get(path.name)
    ]
    baseline = next((path.texts_per_second for path in measured if path.name == "torch fp32"), 0.0)
    for path in measured:
        path.x_torch_fp32 = path.texts_per_second / baseline if baseline else 0.0
        path.peak_percent = 100 * path.texts_per_second * gflop_per_text / peak_gflops if peak_gflops else 0.0
    return measured


class ChoiceCache:
    """The measurements of this machine, one JSON file in the model cache folder."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / CHOICE_FILE

    def read(self) -> dict[str, dict]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def get(self, key: str) -> Choice | None:
        """The stored choice, or None (also for an entry this version cannot read: measure again)."""
        entry = self.read().get(key)
        if not isinstance(entry, dict):
            return None
        try:
            return Choice(**{**entry, "paths": [Measured(**path) for path in entry["paths"]]})
        except (TypeError, KeyError):
            return None

    def put(self, choice: Choice) -> bool:
        """Store ``choice``; False where the folder is read-only (the next process measures again)."""
        entries = self.read()
        entries[choice.key] = asdict(choice)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps(entries, indent=1, sort_keys=True))
            temporary.replace(self.path)
        except OSError:
            return False
        return True

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        """One measurement at a time on this machine (a lock file beside the cache), where the
        folder can be written; elsewhere no lock."""
        import fasteners

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = fasteners.InterProcessLock(str(self.path.with_suffix(".lock")))
            # A measurement that hangs must not stall every other process's model load for ever.
            locked = lock.acquire(timeout=LOCK_WAIT_SECONDS)
        except OSError:
            locked = False
        if not locked:
            yield
            return
        try:
            yield
        finally:
            lock.release()


def choose(
    architecture: str,
    cache: ChoiceCache,
    open_path: Callable[[Candidate], Callable[[Sequence[str], int], object]],
    texts: Sequence[str],
    gflop_per_text: Callable[[], float],
    *,
    precision: str = "auto",
    remeasure: bool = False,
    lossy: bool = False,
    cpu: Cpu | None = None,
    versions: dict[str, str] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    budget_seconds: float = BUDGET_SECONDS,
    log: Callable[[str], None] = lambda line: None,
) -> Choice:
    """The cached choice for this model shape (``architecture``), CPU and runtimes, or a new
    measurement. ``open_path`` loads a path and returns its encode function (a path that cannot
    load here is left out); ``gflop_per_text`` is asked only when measuring (it tokenizes).
    ``lossy``: the int8 paths are measured too (only with ``remeasure``: their conversion is
    slow, and they are never chosen)."""
    cpu = cpu or this_cpu()
    versions = versions if versions is not None else runtime_versions()
    key = choice_key(architecture, cpu, versions, precision)
    cached = None if remeasure else cache.get(key)
    if cached is not None:
        return cached
    with cache.measuring():  # another process measuring now would skew both: wait, then reuse its result
        cached = None if remeasure else cache.get(key)
        if cached is not None:
            return cached
        paths = candidate_paths(cpu, precision, lossy=lossy and remeasure)
        return _measure_and_cache(key, cache, open_path, texts, gflop_per_text, cpu, versions, paths, clock, budget_seconds, log)


def _measure_and_cache(key, cache, open_path, texts, gflop_per_text, cpu, versions, candidates, clock, budget_seconds, log) -> Choice:
    started = clock()
    paths, encoders = [], {}
    for path in candidates:
        try:
            encode = open_path(path)
            encode(texts[:BATCH_SIZE], BATCH_SIZE)  # warm up: first-call compilation is not speed
        except Exception as error:  # noqa: BLE001 - a runtime that cannot run here is not a candidate
            log(f"backends: {path.name} left out ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})")
            continue
        paths.append(path)
        encoders[path.name] = encode
    if not encoders:
        raise RuntimeError("no backend could run the model here")
    log(f"backends: measuring {', '.join(encoders)} on {len(texts)} texts (once per model, CPU and runtime versions)")
    rates = measure(encoders, texts, clock=clock, budget_seconds=budget_seconds)
    work = gflop_per_text()
    measured = summarize(paths, rates, cpu.peak_gflops, work)
    winner = pick(measured)
    choice = Choice(
        key=key, chosen=winner.name, backend=winner.backend, precision=winner.precision, paths=measured,
        cpu=cpu.model, cores=cpu.cores, peak_gflops=cpu.peak_gflops, gflop_per_text=work,
        seconds=clock() - started, measured_at=time.strftime("%Y-%m-%d %H:%M:%S"), versions=versions,
    )
    if not cache.put(choice):
        log(f"backends: {cache.path} cannot be written: the next process measures again (set JOBPING_MODEL_CACHE)")
    log(f"backends: chose {winner.name} ({winner.texts_per_second:.1f} texts/s, {winner.x_torch_fp32:.2f}x torch fp32)")
    return choice


def describe(choice: Choice) -> list[str]:
    """The table `jobping-pipeline backends` prints."""
    lines = [
        f"CPU: {choice.cpu}, {choice.cores} cores, fp32 FMA peak {choice.peak_gflops:.0f} GFLOP/s; "
        f"a sample text is {choice.gflop_per_text:.2f} GFLOP; measured {choice.measured_at} in {choice.seconds:.0f} s",
        f"{'path':<16} {'texts/s':>8} {'x torch fp32':>13} {'% of peak':>10}  chosen",
    ]
    for path in sorted(choice.paths, key=lambda path: -path.texts_per_second):
        mark = "<- chosen" if path.name == choice.chosen else ("lossy: an opt-in, never chosen" if path.lossy else "")
        lines.append(
            f"{path.name:<16} {path.texts_per_second:>8.1f} {path.x_torch_fp32:>13.2f} {path.peak_percent:>9.0f}%  {mark}"
        )
    lines.append("what the lossy paths (int8, fewer tokens) cost in recall: docs/performance.md#backends")
    lossy = [path for path in choice.paths if path.lossy]
    if not lossy:
        lines.append("int8 paths: not measured here; `jobping-pipeline backends --measure` measures them too")
    else:
        fastest = max(lossy, key=lambda path: path.texts_per_second)
        lines.append(
            f"fastest int8 here: {fastest.name}: JOBPING_QUANTIZATION=int8 JOBPING_BACKEND={fastest.backend}, "
            "set alike on every machine of the installation (its own model id: every job is embedded again)"
        )
    return lines
