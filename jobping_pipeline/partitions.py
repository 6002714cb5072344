"""Partitions of ``job_embeddings``: one per chunk of the chunk registry.

A chunk is a fixed set of at most ``JOBPING_CHUNK_SIZE`` jobs, assigned once in primary-key
order and recorded in the jobs database, so a materialized partition means "these jobs are
embedded" and the partition view in the UI is a coverage map. Keys are zero-padded chunk
numbers ("000001"), so they sort in the order the chunks were made.
"""

from typing import Sequence, TypeVar

from dagster import DynamicPartitionsDefinition

JOB_CHUNKS = "job_chunks"

job_chunks = DynamicPartitionsDefinition(name=JOB_CHUNKS)

# A run embeds up to this many chunks (a UI backfill, a sensor tick, the CLI's backfill alike),
# so one process loads the model once for all of them and Dagster's per-run work is paid once.
CHUNKS_PER_RUN = 10

# The tags of a run over a partition range: Dagster's own, from a UI backfill's multi-run policy.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

Chunk = TypeVar("Chunk")


def in_runs(chunks: Sequence[Chunk]) -> list[list[Chunk]]:
    """Chunks in chunk order as runs of up to CHUNKS_PER_RUN of them: one partition range each,
    from its first to its last chunk, so ``n`` chunks take ceil(n / 10) runs however far apart
    they are. The chunks in between are up to date: the run skips them with one query."""
    return [list(chunks[start : start + CHUNKS_PER_RUN]) for start in range(0, len(chunks), CHUNKS_PER_RUN)]


def run_partitions(chunk_keys: Sequence[str]) -> tuple[str | None, dict[str, str]]:
    """What a run of these chunks targets, as (partition key, tags): one chunk is its partition;
    more are the range from the first to the last (Dagster's range tags, no partition key)."""
    if len(chunk_keys) == 1:
        return chunk_keys[0], {}
    return None, {RANGE_START_TAG: chunk_keys[0], RANGE_END_TAG: chunk_keys[-1]}
