"""The one error hierarchy. The CLI prints ``str(err)`` on one line and exits with ``exit_code``."""

from __future__ import annotations


class CnnbenchError(Exception):
    """A user-facing error: its message is one line that says what to do."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")


class UnknownNameError(CnnbenchError):
    """A model, engine, precision, scenario or dataset name that does not exist."""


class InvalidInputError(CnnbenchError):
    """A value or file given by the user is malformed (bad shape, batch, config, data)."""


class ArtifactError(CnnbenchError):
    """A file we read is missing, truncated, corrupt or mismatched (ONNX, engine, weights)."""


class WeightsError(ArtifactError):
    """A state dict that cannot be loaded strictly into the model."""


class RuntimeUnavailableError(CnnbenchError):
    """An optional runtime (TensorRT, OpenVINO, CUDA, ...) is not installed or has no device."""


class ResourceError(CnnbenchError):
    """The machine ran out of something (memory, disk) in a step that was attempted: exit 1."""

    exit_code = 1


class ResultsWriteError(CnnbenchError):
    """Measured rows could not be written; ``rows`` holds them, to be printed all the same."""

    exit_code = 1

    def __init__(self, message: str, rows: list[dict[str, object]]) -> None:
        super().__init__(message)
        self.rows = rows


class StoreUnavailableError(CnnbenchError):
    """The results store went away (stopped, locked, full) in a step that was attempted: exit 1.
    The rows it could not take are in the results file, for ``cnnbench store sync``."""

    exit_code = 1


class CheckFailedError(CnnbenchError):
    """A verification gate failed (parity, accuracy, regression). Exit code 1, not 2."""

    exit_code = 1


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception's message, cut at ``limit`` (for one-line errors);
    the exception type's name when the message is empty."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(exc).__name__
