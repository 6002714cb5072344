"""Whose fault an error is: one text's, or the infrastructure's (store/state.md, rule 11).

An error about one text (the tokenizer rejects it, the API refuses that input, the model returns
NaN for it) is charged to the jobs holding that text: an attempt each, up to
``JOBPING_MAX_ATTEMPTS``. An error of the infrastructure (the database or the API unreachable
after their retries, the encoder's open circuit, credentials refused, the GPU out of memory or
lost, the machine out of memory) would fail every text the same way: it fails the run as a whole,
counts against its chunks (the sensor backs off on them) and charges no job, so an outage never
uses up the attempts of the jobs that were waiting for it.
"""

from __future__ import annotations

import psycopg

from jobping_pipeline.models.openai_protocol import ApiRequestRefused, ApiUnavailable

INFRASTRUCTURE = "infrastructure"
ONE_TEXT = "one text"

# Refusals that would be the same for every text: credentials, permissions, an unknown model.
REFUSED_FOR_EVERY_TEXT = frozenset({401, 402, 403, 404})
# Accelerator faults surface as these classes (torch.cuda.OutOfMemoryError, torch.AcceleratorError),
# matched by name so that nothing here imports torch.
ACCELERATOR_ERRORS = frozenset({"OutOfMemoryError", "AcceleratorError", "CudaError"})
# Memory ran out, on the host or a device (ONNX Runtime says "Failed to allocate memory").
MEMORY_MESSAGES = ("out of memory", "not enough memory", "can't allocate memory", "Failed to allocate memory", "bad_alloc")
ACCELERATOR_MESSAGES = (*MEMORY_MESSAGES, "CUDA error", "device-side assert", "device lost", "XPU error")


class InfrastructureFault(RuntimeError):
    """The run stops: an error no text is to blame for. Charges no job."""


def classify(error: BaseException) -> str:
    """:data:`INFRASTRUCTURE` or :data:`ONE_TEXT`, looking through the chain of causes."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_infrastructure(current):
            return INFRASTRUCTURE
        current = current.__cause__ or current.__context__
    return ONE_TEXT


def is_infrastructure(error: BaseException) -> bool:
    return classify(error) == INFRASTRUCTURE


def _is_infrastructure(error: BaseException) -> bool:
    from jobping_pipeline.store import DatabaseUnavailable

    if isinstance(error, (InfrastructureFault, DatabaseUnavailable, ApiUnavailable, MemoryError)):
        return True
    if isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError)):
        return True
    if isinstance(error, OSError):
        return True  # the network, the disk, a model file gone: ConnectionError and TimeoutError included
    if isinstance(error, ApiRequestRefused):
        return error.status in REFUSED_FOR_EVERY_TEXT
    if type(error).__name__ in ACCELERATOR_ERRORS:
        return True
    # Any exception type: ONNX Runtime's and OpenVINO's derive from Exception, not RuntimeError.
    message = str(error)
    return any(marker in message for marker in ACCELERATOR_MESSAGES)


def is_out_of_memory(error: BaseException) -> bool:
    """Memory ran out (host or device): a smaller batch may fit, so the batch is split before the
    run gives up on it (embedding.py)."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    return any(marker in str(error) for marker in MEMORY_MESSAGES)
