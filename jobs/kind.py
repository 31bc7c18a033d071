"""What a job kind is: a params schema, an async `run`, and its retry and timeout policy."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from jobs.progress import Progress

P = TypeVar("P", bound=BaseModel)


class PermanentError(Exception):
    """Raise from job code for an error that another attempt cannot fix: the job fails at once."""


@dataclass(frozen=True, slots=True)
class JobContext:
    """What job code gets besides its params."""

    job_id: str
    attempt: int
    progress: Progress


@dataclass(frozen=True, slots=True)
class Kind(Generic[P]):
    name: str
    title: str
    params: type[P]
    run: Callable[[JobContext, P], Awaitable[Any]]
    max_attempts: int = 3
    timeout_s: float = 600.0
    # Errors that are never worth another attempt, besides PermanentError.
    no_retry: tuple[type[BaseException], ...] = ()

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        if isinstance(error, (PermanentError, *self.no_retry)):
            return False
        return attempt < self.max_attempts

    def schema(self) -> dict[str, Any]:
        return self.params.model_json_schema()
