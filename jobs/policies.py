"""Queue policies: pure functions from (waiting jobs, usage so far) to a run order.

No Django here: the dispatcher, the queue positions and the ETAs all call `order()` on the same
inputs, so what a participant is told is what will happen.
"""

import heapq
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

FIFO, ROUND_ROBIN, FAIR_SHARE = "fifo", "round_robin", "fair_share"
POLICIES = (FIFO, ROUND_ROBIN, FAIR_SHARE)


@dataclass(frozen=True)
class Waiting:
    """One waiting (queued) job."""

    id: str
    owner: str  # workspace slug, e.g. "001"
    priority: int  # higher runs earlier; 0 normal; the instructor's "run next" sets more
    created_at: datetime  # submission time: tie-breaker, and the order inside one owner's jobs
    estimate: float = 60.0  # expected GPU seconds (fair_share and ETAs)


@dataclass(frozen=True)
class Usage:
    """What an owner has used so far today."""

    jobs: int = 0  # jobs started today, running ones included
    gpu_seconds: float = 0.0


def _own_order(job: Waiting):
    return (-job.priority, job.created_at, job.id)


def _seconds(value: float) -> float:
    """A duration that cannot go negative or NaN (a NaN would corrupt the heap's ordering)."""
    return float(value) if value > 0 else 0.0


def order(policy: str, waiting: Sequence[Waiting], usage: Mapping[str, Usage]) -> list[Waiting]:
    """The full run order of `waiting` under `policy`.

    fifo is one sort. round_robin and fair_share cannot be one sort key (A's ten jobs would all
    share A's count): they simulate the queue, each time taking the best head among the owners'
    own queues and charging its owner one job (round_robin) or its estimated GPU seconds
    (fair_share) before the next pick. Priority stays an overlay: a higher-priority head always
    wins.

    Complexity: O(n log n) for n waiting jobs. Sorting each owner's jobs is O(n log n) overall;
    the heap holds at most one entry per owner (its next job), and each of the n picks is one pop
    and at most one push, O(log owners). An owner's heap entry is only re-pushed after its own
    pick, so the count it carries is always current. 200 owners x 10 jobs takes milliseconds.
    """
    if policy not in POLICIES:
        raise ValueError(f"Unknown queue policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if policy == FIFO:
        return sorted(waiting, key=_own_order)

    per_owner: dict[str, list[Waiting]] = defaultdict(list)
    for job in waiting:
        per_owner[job.owner].append(job)
    for jobs in per_owner.values():
        jobs.sort(key=_own_order, reverse=True)  # pop() from the end gives the owner's next job

    def charge(owner: str) -> float:
        used = usage.get(owner, Usage())
        return float(used.jobs) if policy == ROUND_ROBIN else _seconds(used.gpu_seconds)

    spent = {owner: charge(owner) for owner in per_owner}
    heap: list[tuple] = []
    for owner, jobs in per_owner.items():
        head = jobs[-1]
        heapq.heappush(heap, (-head.priority, spent[owner], head.created_at, head.id, owner))

    result: list[Waiting] = []
    while heap:
        *_, owner = heapq.heappop(heap)
        job = per_owner[owner].pop()
        result.append(job)
        spent[owner] += 1.0 if policy == ROUND_ROBIN else _seconds(job.estimate)
        if per_owner[owner]:
            head = per_owner[owner][-1]
            heapq.heappush(heap, (-head.priority, spent[owner], head.created_at, head.id, owner))
    return result


def positions(ordered: Sequence[Waiting]) -> dict[str, int]:
    return {job.id: n for n, job in enumerate(ordered, start=1)}


def etas(ordered: Sequence[Waiting], slots: int, running_remaining: Sequence[float] = ()) -> dict[str, float]:
    """Seconds until each waiting job is expected to start, with `slots` workers.

    Each worker is first busy for the remaining time of a running job (fewer entries than slots
    means free slots; entries beyond `slots` are ignored), then takes the next job in order
    whenever it becomes free. No worker online (slots == 0): {} (unknown, not "never").
    O(n log slots).
    """
    if slots <= 0:
        return {}
    busy = [_seconds(r) for r in list(running_remaining)[:slots]]
    free_at = busy + [0.0] * (slots - len(busy))
    heapq.heapify(free_at)
    result: dict[str, float] = {}
    for job in ordered:
        start = heapq.heappop(free_at)
        result[job.id] = start
        heapq.heappush(free_at, start + _seconds(job.estimate))
    return result


@dataclass(frozen=True)
class Sample:
    """One measured run: what ComfyUI spent on a workflow on a worker."""

    workflow: str
    worker: str
    gpu_seconds: float
    load_seconds: float = 0.0  # of which loading models (a warm GPU skips it)


@dataclass(frozen=True)
class Calibration:
    """How long runs take, from measured runs: model loading and cold starts left out, since a
    warm GPU does neither. Medians, so one stalled or cached run does not move it."""

    pairs: Mapping[tuple[str, str], float]
    workflows: Mapping[str, float]
    overall: float
    cold_starts: Mapping[str, float]  # per worker: median seconds a serverless GPU took to start

    def run_seconds(self, workflow: str, worker: str | None = None) -> float:
        """Expected seconds on a warm GPU: this workflow on this worker where it ran there
        (GPUs differ), else this workflow anywhere, else any run."""
        if worker is not None and (workflow, worker) in self.pairs:
            return self.pairs[(workflow, worker)]
        return self.workflows.get(workflow, self.overall)

    def cold_start(self, worker: str) -> float:
        return self.cold_starts.get(worker, 0.0)


PAIR_RUNS = 3  # runs of a workflow on one worker before that worker's own figure is used


def calibrate(
    samples: Sequence[Sample],
    cold_starts: Mapping[str, Sequence[float]] = {},  # noqa: B006
    default: float = 30.0,
) -> Calibration:
    """The Calibration of `samples` (newest first; each key's newest `per_key` are used)."""
    per_key = 20
    pairs: dict[tuple[str, str], list[float]] = defaultdict(list)
    workflows: dict[str, list[float]] = defaultdict(list)
    everything: list[float] = []
    for sample in samples:
        net = max(_seconds(sample.gpu_seconds) - _seconds(sample.load_seconds), 0.1)
        if len(everything) < 50:
            everything.append(net)
        if sample.workflow:
            if len(workflows[sample.workflow]) < per_key:
                workflows[sample.workflow].append(net)
            if sample.worker and len(pairs[(sample.workflow, sample.worker)]) < per_key:
                pairs[(sample.workflow, sample.worker)].append(net)
    return Calibration(
        pairs={k: statistics.median(v) for k, v in pairs.items() if len(v) >= PAIR_RUNS},
        workflows={k: statistics.median(v) for k, v in workflows.items()},
        overall=statistics.median(everything) if everything else default,
        cold_starts={k: statistics.median(v) for k, v in cold_starts.items() if v},
    )


MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".gguf", ".sft", ".bin")


def prompt_models(prompt) -> list[str]:
    """The model files a prompt names (its loaders' inputs), as ComfyUI will load them."""
    found = set()
    for node in (prompt or {}).values() if isinstance(prompt, dict) else ():
        for value in ((node or {}).get("inputs") or {}).values() if isinstance(node, dict) else ():
            if isinstance(value, str) and value.lower().endswith(MODEL_SUFFIXES):
                found.add(value)
    return sorted(found)


def by_affinity(free_workers: Sequence, wanted: Sequence[str], loaded: Mapping) -> list:
    """Free workers, those with most of the job's models already loaded first (a video model's
    load costs tens of seconds); otherwise in their given order. It never chooses the job: the
    policy did, so fairness stays the policy's."""
    needed = set(wanted)
    if not needed:
        return list(free_workers)
    return sorted(free_workers, key=lambda w: -len(needed & set(loaded.get(w) or ())))
