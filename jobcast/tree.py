"""Trees of jobs: a parent's children (made by its code with `ctx.spawn`, or submitted with it),
what each child's end hands the parent's continuation, and a job's place in a tree as the create
script takes it. The rules that move a tree along are Redis's: jobcast/store/lua/tree.lua."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

# jobcast's own kind, every worker's: the root of a batch submitted without a completion job, which
# sums its items' outcomes up once they have all ended.
BATCH_KIND = "batch"


def child_id(parent: str, index: int) -> str:
    """The id of a parent's `index`th child made by its code: the same in every attempt of the
    parent's first part, so that an attempt run again makes no child twice."""
    return hashlib.sha256(f"{parent}\n{index}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Child:
    """A child to make (`ctx.spawn_many`): its kind and params, and its parent's policy for it."""

    kind: str
    params: Mapping[str, Any] | BaseModel = field(default_factory=dict)
    # Its priority (default: its parent's).
    priority: str | None = None
    # Its failure, after its own retries, fails the parent and cancels the other children.
    fail_fast: bool = False


@dataclass(frozen=True, slots=True)
class TreePlace:
    """Where a new job stands in a tree (JobStore.create_call)."""

    # Its parent's id, for a child.
    parent: str | None = None
    # A child whose failure (after its own retries) fails the parent and cancels its siblings.
    fail_fast: bool = False
    # A parent submitted with its children: it waits for them, then runs (BullMQ's flows).
    awaits_children: bool = False
    # A tree's root: the jobs of the whole tree, counted against the limits at once.
    tree_size: int = 1
    # A job below a submitted tree's root: its root answered for the limits.
    in_tree: bool = False

    def args(self) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if self.parent is not None:
            args["parent"] = self.parent
        if self.awaits_children:
            args["awaits_children"] = True
        if self.tree_size > 1:
            args["tree_size"] = self.tree_size
        if self.in_tree:
            args["in_tree"] = True
        return args


@dataclass(frozen=True, slots=True)
class ChildOutcome:
    """How one child ended, as its parent's continuation gets it."""

    id: str
    kind: str
    state: str
    result: Any = None
    # `{"type", "message"}` for a failed or cancelled child.
    error: dict[str, str] | None = None

    @property
    def succeeded(self) -> bool:
        return self.state == "succeeded"
