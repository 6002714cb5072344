"""Partitions of ``job_embeddings``: one per chunk of the chunk registry.

A chunk is a fixed set of at most ``JOBPING_CHUNK_SIZE`` jobs, assigned once in primary-key
order and recorded in the jobs database, so a materialized partition means "these jobs are
embedded" and the partition view in the UI is a coverage map. Keys are zero-padded chunk
numbers ("000001"), so they sort in the order the chunks were made.
"""

from dagster import DynamicPartitionsDefinition

JOB_CHUNKS = "job_chunks"

job_chunks = DynamicPartitionsDefinition(name=JOB_CHUNKS)
