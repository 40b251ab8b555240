"""Queue policies: pure functions from (waiting jobs, usage so far) to a run order.

No Django here: the dispatcher, the queue positions and the ETAs all call `order()` on the same
inputs, so what a participant is told is what will happen.
"""
import heapq
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Mapping, Sequence

POLICIES = ("fifo", "round_robin", "fair_share")


@dataclass(frozen=True)
class Waiting:
    id: str
    owner: str
    priority: int
    created_at: datetime
    estimate: float = 60.0


@dataclass(frozen=True)
class Usage:
    jobs: int = 0
    gpu_seconds: float = 0.0


def _own_order(job: Waiting):
    return (-job.priority, job.created_at, job.id)


def order(policy: str, waiting: Sequence[Waiting], usage: Mapping[str, Usage]) -> list[Waiting]:
    """The full run order of `waiting` under `policy`.

    fifo is one sort. round_robin and fair_share cannot be one sort key (A's ten jobs would all
    share A's count): they simulate the queue, each time taking the best head among the owners'
    own queues and charging its owner one job (round_robin) or its estimated GPU seconds
    (fair_share) before the next pick. Priority stays an overlay: a higher-priority head always
    wins. O(n log n) with a heap of one head per owner.
    """
    if policy not in POLICIES:
        raise ValueError(f"Unknown queue policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if policy == "fifo":
        return sorted(waiting, key=_own_order)

    per_owner: dict[str, list[Waiting]] = defaultdict(list)
    for job in waiting:
        per_owner[job.owner].append(job)
    for jobs in per_owner.values():
        jobs.sort(key=_own_order, reverse=True)  # pop() from the end gives the owner's next job

    def charge(owner: str) -> float:
        used = usage.get(owner, Usage())
        return float(used.jobs) if policy == "round_robin" else float(used.gpu_seconds)

    spent = {owner: charge(owner) for owner in per_owner}
    heap = []
    for owner, jobs in per_owner.items():
        head = jobs[-1]
        heapq.heappush(heap, (-head.priority, spent[owner], head.created_at, head.id, owner))

    result: list[Waiting] = []
    while heap:
        *_, owner = heapq.heappop(heap)
        job = per_owner[owner].pop()
        result.append(job)
        spent[owner] += 1.0 if policy == "round_robin" else max(job.estimate, 0.0)
        if per_owner[owner]:
            head = per_owner[owner][-1]
            heapq.heappush(heap, (-head.priority, spent[owner], head.created_at, head.id, owner))
    return result


def positions(ordered: Sequence[Waiting]) -> dict[str, int]:
    return {job.id: n for n, job in enumerate(ordered, start=1)}


def etas(ordered: Sequence[Waiting], slots: int, running_remaining: Sequence[float] = ()) -> dict[str, float]:
    """Seconds until each waiting job is expected to start, with `slots` workers.

    Each worker is first busy for the remaining time of a running job (missing entries are free
    slots), then takes the next job in order.
    """
    if slots <= 0:
        return {}
    free_at = sorted([max(r, 0.0) for r in running_remaining[:slots]] + [0.0] * max(slots - len(running_remaining), 0))
    heapq.heapify(free_at)
    result = {}
    for job in ordered:
        start = heapq.heappop(free_at)
        result[job.id] = start
        heapq.heappush(free_at, start + max(job.estimate, 0.0))
    return result
