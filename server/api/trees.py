"""A submitted tree of jobs: a submission with `children` (the parent runs after them) or `then` (a
chain), checked for size before it is parsed, turned into one rule (a parent runs after its
children), and planned as the create calls of one script call (JobStore.create_tree)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from jobcast.protocol import Priority
from jobcast.server.http.problems import Problem
from jobcast.server.http.request_ids import current_request_id
from jobcast.server.security.auth import Ownership
from jobcast.store.jobs import CreateCall, JobStore, Submission
from jobcast.tree import TreePlace


class TreeNode(BaseModel):
    """A job of a submitted tree: its kind and params, and the jobs it waits for (`children`)
    or that wait for it (`then`)."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    params: dict[str, Any] = Field(default_factory=dict)
    priority: Priority | None = Field(
        default=None, description="Default: its parent's (the root's: `default`)."
    )
    children: list[TreeNode] = Field(
        default_factory=list, description="Jobs that run first; this one runs once they have all ended."
    )
    then: TreeNode | None = Field(
        default=None, description="A job that runs once this one has ended (a chain), with its outcome."
    )
    fail_fast: bool = Field(
        default=False,
        description="This job's failure (after its retries) fails its parent at once and cancels its "
        "siblings; otherwise the parent runs anyway and reads every outcome. A `then` link is always "
        "fail-fast: a chain stops at a failed link.",
    )


def check_shape(body: Any, max_jobs: int, max_depth: int, max_children: int) -> None:
    """Refuse a tree too large (413) or too deep or wide (422) before it is parsed: a body nested a
    thousand levels costs a parser a frame each."""
    jobs = 0
    stack: list[tuple[Any, int]] = [(body, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, dict):
            continue
        jobs += 1
        if jobs > max_jobs:
            raise Problem(413, f"at most {max_jobs} jobs in one tree", slug="payload-too-large")
        if depth > max_depth:
            raise _shape_problem(f"at most {max_depth} levels below a tree's root", "too_deep")
        children = node.get("children") or []
        if isinstance(children, list):
            if len(children) > max_children:
                raise _shape_problem(f"at most {max_children} children of one job", "too_many_children")
            stack.extend((child, depth + 1) for child in children)
        # A chain's next link is the parent of this one: the tree grows a level up.
        if (then := node.get("then")) is not None:
            stack.append((then, depth + 1))


def _shape_problem(message: str, code: str) -> Problem:
    errors = [{"field": "children", "message": message, "code": code}]
    return Problem(422, f"invalid tree: {message}", slug="validation", errors=errors)


def unchain(node: TreeNode) -> TreeNode:
    """The tree with every `then` turned around: `a then b` is `b` with child `a` (fail-fast), so
    that one rule, a parent runs after its children, runs both."""
    done = node.model_copy(update={"children": [unchain(child) for child in node.children], "then": None})
    if node.then is None:
        return done
    after = node.then
    first = done.model_copy(update={"fail_fast": True})
    return unchain(after.model_copy(update={"children": [*after.children, first]}))


def plan_tree(
    store: JobStore,
    root: TreeNode,
    root_submission: Submission,
    owner: Ownership,
    idempotency_key: str | None,
    check: Callable[[TreeNode, Priority], Submission],
) -> list[CreateCall]:
    """The create calls of an unchained tree (its root's first, each parent's before its
    children's), the root's submission made; `check(node, priority)` makes each other job's (the
    kind's validation, and its 422)."""
    ids = store.new_ids(_count(root))
    calls: list[CreateCall] = []
    queue: list[tuple[TreeNode, str | None, Priority, bool]] = [(root, None, root_submission.priority, False)]
    while queue:
        node, parent, priority, fail_fast = queue.pop(0)
        job_id = ids[len(calls)]
        submission = root_submission if parent is None else check(node, node.priority or priority)
        place = TreePlace(
            parent=parent,
            fail_fast=fail_fast,
            awaits_children=bool(node.children),
            tree_size=len(ids) if parent is None else 1,
            in_tree=parent is not None,
        )
        calls.append(
            store.create_call(
                job_id,
                submission,
                idempotency_key=idempotency_key if parent is None else None,
                request_id=current_request_id.get(),
                owner=owner.owner,
                submitted_by=owner.submitted_by,
                client=owner.client,
                tree=place,
            )
        )
        queue.extend((child, job_id, submission.priority, child.fail_fast) for child in node.children)
    return calls


def _count(node: TreeNode) -> int:
    return 1 + sum(_count(child) for child in node.children)
