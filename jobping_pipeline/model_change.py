"""Moving the table to another model (``jobping-pipeline prepare-model-change``), as plain Python.

A model of the column's dimension needs nothing but a backfill: every job is stale by model id.
A model of another dimension needs the column itself changed, which drops every stored vector,
so it is done only when confirmed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jobping_pipeline.models import Encoder
from jobping_pipeline.store import JobStore


@dataclass
class ModelChange:
    """What preparing did (or would do), in lines for the operator, and whether it is done."""

    lines: list[str] = field(default_factory=list)
    done: bool = True


def prepare_model_change(store: JobStore, encoder: Encoder, *, confirmed: bool) -> ModelChange:
    """Get the column and state ready for ``encoder`` (a local model or an embeddings API); a
    dimension change needs ``confirmed``."""
    settings = store.settings
    current = store.inspect().embedding_dimensions
    if current == encoder.dimensions or current is None:
        change = ModelChange([f"setup: {line}" for line in store.setup(encoder.dimensions)])
        coverage = store.coverage(encoder.model_id)
        change.lines.append(
            f"{encoder.model_id} makes {encoder.dimensions}-dimensional vectors, like the column: nothing "
            f"to prepare. {coverage.eligible - coverage.fresh} jobs are not embedded by it yet; "
            "`jobping-pipeline backfill` embeds them."
        )
        return change
    if not confirmed:
        coverage = store.coverage(encoder.model_id)
        return ModelChange(
            [
                f"{encoder.model_id} makes {encoder.dimensions}-dimensional vectors; "
                f"{settings.jobs_table}.{settings.embedding_column} is vector({current}). Preparing drops the "
                f"column's {coverage.eligible - coverage.missing} vectors (search returns nothing until the "
                "backfill has run) and adds it back with the new dimension. Run again with --yes to do it. "
                "To keep them until the new vectors are complete, embed into a second column instead: "
                "JOBPING_EMBEDDING_COLUMN=<new column> with JOBPING_STATE_SCHEMA=<a state schema of its own>."
            ],
            done=False,
        )
    change = ModelChange(
        [f"prepare-model-change: {line}" for line in store.change_embedding_dimensions(encoder.dimensions)]
    )
    change.lines.append("prepare-model-change: done; now run `jobping-pipeline backfill`")
    return change
