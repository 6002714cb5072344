"""jobping-pipeline: keeps vector embeddings of a job board's Postgres jobs table complete and
fresh, as a Dagster code location. ``defs`` is what ``dagster ... -m jobping_pipeline`` loads.

``defs`` is built on first access (PEP 562), not at import: importing the command line or the
instance storage must not read the settings, so that a bad setting is reported by them as a
one-line error rather than as an import failure.
"""

__all__ = ["defs"]


def __getattr__(name: str):
    if name == "defs":
        from jobping_pipeline.definitions import defs

        return defs
    raise AttributeError(f"module 'jobping_pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + ["defs"])
