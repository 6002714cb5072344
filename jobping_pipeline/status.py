"""``jobping-pipeline status``: where coverage stands, what is left, and when it will be done."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd
from dagster import AssetKey, DagsterInstance

from jobping_pipeline.store import Coverage, JobStore

RECENT_MATERIALIZATIONS = 20


@dataclass
class Status:
    model_id: str
    coverage_percent: float
    eligible: int
    fresh: int
    stale: int
    pending: int
    missing: int
    failed: int
    without_state: int
    hidden: int
    complete: bool
    chunks_total: int
    chunks_done: int
    chunks_to_do: int
    jobs_to_do: int
    jobs_not_in_a_chunk: int
    recent_jobs_per_second: float | None
    eta_seconds: float | None
    failing_chunks: list[dict]

    def as_dict(self) -> dict:
        return asdict(self)


def recent_throughput(instance: DagsterInstance | None) -> float | None:
    """Mean jobs/s of the latest materializations of job_embeddings that embedded anything."""
    if instance is None:
        return None
    records = instance.fetch_materializations(
        AssetKey("job_embeddings"), limit=RECENT_MATERIALIZATIONS, ascending=False
    ).records
    embedded = seconds = 0.0
    for record in records:
        metadata = record.asset_materialization.metadata if record.asset_materialization else {}
        jobs = metadata.get("jobs_embedded")
        wall = metadata.get("wall_seconds")
        if jobs is not None and wall is not None and jobs.value:
            embedded += float(jobs.value)
            seconds += float(wall.value)
    return embedded / seconds if seconds > 0 else None


def chunk_table(progress: list[tuple[str, int, int, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(progress, columns=["chunk", "jobs", "to_do", "failed"])
    frame["done_percent"] = (100.0 * (frame["jobs"] - frame["to_do"]) / frame["jobs"].where(frame["jobs"] > 0)).round(1)
    return frame


def collect_status(store: JobStore, model_id: str, instance: DagsterInstance | None) -> tuple[Status, pd.DataFrame]:
    coverage: Coverage = store.coverage(model_id)
    chunks = chunk_table(store.chunk_progress(model_id))
    unassigned = store.unassigned_count()
    jobs_to_do = int(chunks["to_do"].sum()) + unassigned
    rate = recent_throughput(instance)
    status = Status(
        model_id=model_id,
        coverage_percent=round(coverage.percent, 4),
        eligible=coverage.eligible,
        fresh=coverage.fresh,
        stale=coverage.stale,
        pending=coverage.pending,
        missing=coverage.missing,
        failed=coverage.failed,
        without_state=coverage.without_state,
        hidden=coverage.hidden,
        complete=coverage.complete,
        chunks_total=len(chunks),
        chunks_done=int((chunks["to_do"] == 0).sum()),
        chunks_to_do=int((chunks["to_do"] > 0).sum()),
        jobs_to_do=jobs_to_do,
        jobs_not_in_a_chunk=unassigned,
        recent_jobs_per_second=round(rate, 2) if rate else None,
        eta_seconds=round(jobs_to_do / rate, 1) if rate and jobs_to_do else (0.0 if not jobs_to_do else None),
        failing_chunks=[
            {"chunk": key, "failed_runs": runs, "last_error": error} for key, runs, error in store.failing_chunks()
        ],
    )
    return status, chunks


def render(status: Status, chunks: pd.DataFrame, format_duration) -> str:
    summary = pd.Series(
        {
            "coverage": f"{status.coverage_percent:.2f}%",
            "eligible": status.eligible,
            "fresh": status.fresh,
            "stale": status.stale,
            "pending": status.pending,
            "missing": status.missing,
            "failed": status.failed,
            "without state": status.without_state,
            "hidden (RLS)": status.hidden,
            "complete": "yes" if status.complete else "NO",
            "chunks done": f"{status.chunks_done} of {status.chunks_total}",
            "jobs to do": status.jobs_to_do,
            "recent jobs/s": status.recent_jobs_per_second if status.recent_jobs_per_second else "unknown",
            "ETA": format_duration(status.eta_seconds) if status.eta_seconds is not None else "unknown",
            "model": status.model_id,
        }
    )
    lines = [summary.to_string()]
    to_do = chunks[chunks["to_do"] > 0]
    if len(to_do):
        lines += ["", f"chunks with work to do ({len(to_do)}, first 10):", to_do.head(10).to_string(index=False)]
    for failing in status.failing_chunks[:10]:
        lines.append(f"chunk {failing['chunk']}: {failing['failed_runs']} failed runs in a row, last: {failing['last_error']}")
    return "\n".join(lines)
