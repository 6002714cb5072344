"""The vector audit: "fresh" checked against the rows themselves, not taken from the state.

The state says a job is fresh when its vector was computed by the configured model from its
current text. The triggers keep that true for every change that passes through them; the audit
proves it for the ones that do not (triggers disabled, restores, another writer of the vector,
a model folder replaced in place):

1. **Text** (every job the state calls fresh, no model): the job's text is built again from the
   row as it is now and its hash compared with the one recorded when its vector was written.
   A difference is an edit the triggers never saw.
2. **Vector** (every such job, no model): the digest of the stored vector is compared with the
   digest recorded when the pipeline wrote it. A difference is a vector someone else wrote, or
   the vector of another row (named, when it is one the pipeline wrote for another job).
3. **Model** (a random sample, or every job with ``everything``): the text is embedded again with
   the configured model and compared with the stored vector by cosine; below
   :data:`COSINE_TOLERANCE` the vector is not the model's vector of that text.

Every job found wrong is queued (stale, due at once, the reason as its last error), so the sensor
or the next backfill repairs it, and the coverage checks and ``status`` fail until then.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from jobping_pipeline.store import JobStore
from jobping_pipeline.texts import build_text, text_hash

# Cosine between a stored vector and the same text embedded again. Measured (240 demo postings,
# all-MiniLM-L6-v2, another batch size and order): the same path again >= 0.9999917 (torch bf16)
# and >= 0.9999998 (fp32 paths); every exact path against torch fp32 >= 0.9999708 (torch bf16),
# 0.9999776 (openvino bf16); two different postings at most 0.8725. 0.999 leaves 30x the widest
# path-to-path gap and stays far above any two different texts.
COSINE_TOLERANCE = 0.999
# Default size of the re-embedded sample: a table where a fraction f of the fresh jobs hold a
# vector that is not the model's is caught with probability 1 - (1 - f) ** n: 95.1% at f = 1%,
# 99.8% at f = 2%, 26% at f = 0.1%. The text and vector digests are checked for every job.
DEFAULT_SAMPLE = 300

TEXT_CHANGED = "text changed behind the triggers"
FOREIGN_VECTOR = "vector not written by the pipeline (another writer, or a restore)"
NOT_THE_MODELS = "vector is not the model's vector of its text"


def detection_probability(bad_fraction: float, sample: int) -> float:
    """The chance that a uniform sample of ``sample`` jobs holds at least one of a fraction
    ``bad_fraction`` of wrong ones (sampling with replacement: a lower bound without)."""
    return 1.0 - (1.0 - bad_fraction) ** sample


def sample_for(bad_fraction: float, probability: float) -> int:
    """The smallest sample that catches a fraction ``bad_fraction`` with ``probability``."""
    return math.ceil(math.log(1.0 - probability) / math.log(1.0 - bad_fraction))


@dataclass(frozen=True)
class AuditProblem:
    job_id: Any
    reason: str

    def describe(self) -> str:
        return f"{self.job_id}: {self.reason}"


@dataclass
class AuditReport:
    model_id: str
    audited: int = 0
    sampled: int = 0
    lowest_cosine: float | None = None
    problems: list[AuditProblem] = field(default_factory=list)
    queued: int = 0
    sweep_seconds: float = 0.0
    model_seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.problems

    def counts(self) -> dict[str, int]:
        """Problems by kind (without the job a vector belongs to, or the cosine measured)."""
        counts: dict[str, int] = {}
        for problem in self.problems:
            kind = "vector of another row" if problem.reason.startswith("vector of job") else problem.reason.split(":")[0]
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    def summary(self) -> str:
        found = "; ".join(f"{count} {kind}" for kind, count in self.counts().items()) or "no problem"
        cosine = f", lowest cosine {self.lowest_cosine:.6f}" if self.lowest_cosine is not None else ""
        return (
            f"{self.audited} jobs recorded fresh by {self.model_id} audited (text and vector digests), "
            f"{self.sampled} embedded again{cosine}: {found}"
            + (f"; {self.queued} queued for repair" if self.queued else "")
        )


def audit(
    store: JobStore,
    spec: Any,
    encoder_factory: Callable[[], Any] | None,
    *,
    sample: int = DEFAULT_SAMPLE,
    everything: bool = False,
    seed: int | None = None,
    batch_size: int = 64,
    on_row: Callable[[], None] | None = None,
    on_embedded: Callable[[int], None] | None = None,
) -> AuditReport:
    """Audit every job the state records as fresh for the model ``spec`` (an encoder spec: its
    ``model_id`` and ``text_template``; see the module's doc), queue those found wrong, and say
    what was found. ``encoder_factory`` makes the configured encoder
    (called only when something is to be embedded again; None: no model check). ``everything``
    embeds every audited job again instead of a sample of ``sample``."""
    model_id, template = spec.model_id, spec.text_template
    report = AuditReport(model_id=model_id)
    columns = store.inspect().text_columns
    rng = random.Random(seed)
    reservoir: list[tuple[Any, int, str, bytes]] = []
    wrong: list[tuple[Any, int, bytes | None, str | None]] = []  # job, version, stored digest, reason
    started = time.perf_counter()
    for job_id, version, recorded_text, recorded_vector, stored_vector, *values in store.audited_jobs(model_id):
        report.audited += 1
        if on_row is not None:
            on_row()
        text = build_text(values, template, columns)
        if text_hash(text) != recorded_text:
            wrong.append((job_id, version, stored_vector, TEXT_CHANGED))
        elif stored_vector is None or stored_vector != recorded_vector:
            wrong.append((job_id, version, stored_vector, None))
        elif everything:
            reservoir.append((job_id, version, text, stored_vector))
        elif len(reservoir) < sample:
            reservoir.append((job_id, version, text, stored_vector))
        else:
            slot = rng.randrange(report.audited)
            if slot < sample:
                reservoir[slot] = (job_id, version, text, stored_vector)
    report.sweep_seconds = time.perf_counter() - started
    problems = _name_foreign_vectors(store, wrong)
    if reservoir and encoder_factory is not None and (everything or sample > 0):
        started = time.perf_counter()
        problems += _embed_again(store, encoder_factory(), reservoir, report, batch_size, on_embedded)
        report.model_seconds = time.perf_counter() - started
    report.problems = [AuditProblem(job_id, reason) for job_id, _, reason in problems]
    report.queued = store.queue_for_repair([(job_id, version, f"audit: {reason}") for job_id, version, reason in problems])
    return report


def _name_foreign_vectors(store: JobStore, wrong: list[tuple[Any, int, bytes | None, str | None]]) -> list[tuple[Any, int, str]]:
    """The reasons of the vector check: no vector, the vector of another job (named), or a
    vector no job's record knows."""
    holders = store.jobs_holding([digest for _, _, digest, reason in wrong if reason is None and digest is not None])
    named: list[tuple[Any, int, str]] = []
    for job_id, version, digest, reason in wrong:
        if reason is None:
            if digest is None:
                reason = "no vector although the state records one"
            elif digest in holders and holders[digest] != job_id:
                reason = f"vector of job {holders[digest]} (another row)"
            else:
                reason = FOREIGN_VECTOR
        named.append((job_id, version, reason))
    return named


def _embed_again(
    store: JobStore,
    encoder,
    picked: Sequence[tuple[Any, int, str, bytes]],
    report: AuditReport,
    batch_size: int,
    on_embedded: Callable[[int], None] | None,
) -> list[tuple[Any, int, str]]:
    """Embed the picked jobs' texts again and compare with their stored vectors (read again,
    and compared only where the vector is still the one the sweep saw)."""
    problems: list[tuple[Any, int, str]] = []
    step = max(batch_size * 8, 1)
    for start in range(0, len(picked), step):
        part = picked[start : start + step]
        texts = list(dict.fromkeys(text for _, _, text, _ in part))  # equal texts embedded once
        by_text = dict(zip(texts, encoder.encode(texts, batch_size=batch_size)))
        vectors = [by_text[text] for _, _, text, _ in part]
        stored = store.stored_vectors([job_id for job_id, _, _, _ in part])
        for (job_id, version, _, digest), vector in zip(part, vectors):
            now = stored.get(job_id)
            if now is None or now[1] != digest:
                continue  # written again since the sweep: that write is the next audit's to check
            cosine = _cosine(vector, now[0])
            report.sampled += 1
            report.lowest_cosine = cosine if report.lowest_cosine is None else min(report.lowest_cosine, cosine)
            if cosine < COSINE_TOLERANCE:
                problems.append((job_id, version, f"{NOT_THE_MODELS}: cosine {cosine:.4f} < {COSINE_TOLERANCE}"))
        if on_embedded is not None:
            on_embedded(len(part))
    return problems


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norms) if norms > 0 else 0.0
