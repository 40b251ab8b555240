"""Queue policies as pure functions: the order each one promises participants."""

import random
from datetime import datetime, timedelta

import pytest

from jobs.policies import POLICIES, Usage, Waiting, etas, order, positions

T0 = datetime(2026, 11, 22, 10, 0, 0)


def job(owner, minute, priority=0, estimate=60.0, name=None):
    return Waiting(
        id=name or f"{owner}-{minute}",
        owner=owner,
        priority=priority,
        created_at=T0 + timedelta(minutes=minute),
        estimate=estimate,
    )


def owners(jobs):
    return [j.owner for j in jobs]


def test_fifo_runs_in_submission_order_whatever_anyone_used_today():
    jobs = [job("b", 2), job("a", 1), job("a", 3), job("c", 0)]
    assert [j.id for j in order("fifo", jobs, {})] == ["c-0", "a-1", "b-2", "a-3"]
    heavy = {"a": Usage(jobs=40, gpu_seconds=9000.0)}
    assert [j.id for j in order("fifo", jobs, heavy)] == ["c-0", "a-1", "b-2", "a-3"]


@pytest.mark.parametrize("policy", POLICIES)
def test_priority_beats_every_policy(policy):
    heavy = {"a": Usage(jobs=50, gpu_seconds=5000.0)}
    jobs = [job("b", 0), job("c", 1), job("a", 9, priority=10)]
    assert order(policy, jobs, heavy)[0].id == "a-9", "the instructor's 'run next' goes first"


def test_round_robin_one_participants_ten_jobs_do_not_hold_back_anothers_first():
    jobs = [job("a", n) for n in range(10)] + [job("b", 30)]
    ordered = order("round_robin", jobs, {})
    assert owners(ordered[:2]) == ["a", "b"], "b's first job runs second, not eleventh"


def test_round_robin_someone_with_fewer_jobs_today_goes_first_even_if_submitted_last():
    jobs = [job("a", n) for n in range(10)] + [job("b", 30)]
    ordered = order("round_robin", jobs, {"a": Usage(jobs=2), "b": Usage(jobs=1)})
    assert ordered[0].id == "b-30"


def test_round_robin_counts_jobs_started_today():
    jobs = [job("busy", 0), job("fresh", 5)]
    ordered = order("round_robin", jobs, {"busy": Usage(jobs=5)})
    assert owners(ordered) == ["fresh", "busy"]


def test_round_robin_interleaves_and_keeps_each_participants_own_order():
    jobs = [job("a", 0), job("a", 1), job("a", 2), job("b", 3), job("b", 4), job("c", 5)]
    ordered = order("round_robin", jobs, {})
    assert [j.id for j in ordered] == ["a-0", "b-3", "c-5", "a-1", "b-4", "a-2"]


def test_fair_share_gpu_heavy_participant_yields():
    jobs = [job("video", 0), job("image", 1)]
    usage = {"video": Usage(jobs=1, gpu_seconds=300.0), "image": Usage(jobs=3, gpu_seconds=10.0)}
    assert owners(order("fair_share", jobs, usage)) == ["image", "video"]
    assert owners(order("round_robin", jobs, usage)) == ["video", "image"], "round robin counts jobs instead"


def test_fair_share_counts_the_estimates_of_jobs_placed_ahead():
    # a's first job is a long video: after it, b's three short images come before a's second job.
    jobs = [job("a", 0, estimate=300), job("a", 1, estimate=300)] + [job("b", 2 + n, estimate=10) for n in range(3)]
    assert owners(order("fair_share", jobs, {})) == ["a", "b", "b", "b", "a"]


def test_equal_timestamps_give_a_deterministic_order():
    jobs = [job("a", 0, name="z"), job("b", 0, name="y"), job("c", 0, name="x")]
    for policy in POLICIES:
        assert [j.id for j in order(policy, jobs, {})] == ["x", "y", "z"], "ties broken by job id"
        assert [j.id for j in order(policy, list(reversed(jobs)), {})] == ["x", "y", "z"], "not by input order"


def test_unknown_policy_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown queue policy 'lottery'"):
        order("lottery", [], {})


def test_positions_are_one_based_and_follow_the_order():
    ordered = order("round_robin", [job("a", 0), job("a", 1), job("b", 2)], {})
    assert positions(ordered) == {"a-0": 1, "b-2": 2, "a-1": 3}


def test_etas_with_one_and_two_workers():
    ordered = [job("a", 0, estimate=60), job("b", 1, estimate=30), job("c", 2, estimate=10)]
    assert etas(ordered, 1) == {"a-0": 0, "b-1": 60, "c-2": 90}
    assert etas(ordered, 2) == {"a-0": 0, "b-1": 0, "c-2": 30}
    assert etas(ordered, 1, running_remaining=[45]) == {"a-0": 45, "b-1": 105, "c-2": 135}
    assert etas(ordered, 2, running_remaining=[45]) == {"a-0": 0, "b-1": 45, "c-2": 60}
    assert etas(ordered, 2, running_remaining=[45, 20]) == {"a-0": 20, "b-1": 45, "c-2": 75}
    assert etas([], 2, running_remaining=[45]) == {}


def test_etas_follow_the_policy_order_so_what_we_announce_is_what_runs():
    jobs = [job("a", n, estimate=100) for n in range(3)] + [job("b", 10, estimate=10)]
    ordered = order("round_robin", jobs, {})
    assert etas(ordered, 1) == {"a-0": 0, "b-10": 100, "a-1": 110, "a-2": 210}


def test_etas_unknown_without_workers():
    assert etas([job("a", 0)], 0) == {}


def random_queue(rng, owners: str, latest: int, priorities: list[int], estimate, most: int) -> list:
    """Up to `most` waiting jobs of `owners`, arriving by `latest`, each with a priority drawn
    from `priorities` and an estimate from `estimate()`."""
    return [
        job(
            rng.choice(owners),
            rng.randint(0, latest),
            priority=rng.choice(priorities),
            estimate=estimate(),
            name=f"j{n:02d}",
        )
        for n in range(rng.randint(0, most))
    ]


@pytest.mark.parametrize("policy", POLICIES)
def test_random_queues_keep_every_job_priority_and_own_order(policy):
    rng = random.Random(7)
    for _ in range(50):
        jobs = random_queue(rng, "abcdef", 100, [0, 0, 0, 5, 10], lambda: rng.uniform(1, 300), 40)
        usage = {o: Usage(jobs=rng.randint(0, 9), gpu_seconds=rng.uniform(0, 900)) for o in "abcdef"}
        ordered = order(policy, jobs, usage)
        assert sorted(j.id for j in ordered) == sorted(j.id for j in jobs), "a permutation: no job lost or doubled"
        prios = [j.priority for j in ordered]
        assert prios == sorted(prios, reverse=True), "higher priority always earlier"
        for owner in "abcdef":
            mine = [j for j in ordered if j.owner == owner]
            assert mine == sorted(mine, key=lambda j: (-j.priority, j.created_at, j.id))


def reference_order(policy, waiting, usage):
    """The DESIGN's simulation written out literally (O(n^2)), to check the heap version against."""
    if policy == "fifo":
        return sorted(waiting, key=lambda j: (-j.priority, j.created_at, j.id))
    queues = {}
    for j in sorted(waiting, key=lambda j: (-j.priority, j.created_at, j.id)):
        queues.setdefault(j.owner, []).append(j)
    u = {o: usage.get(o, Usage()) for o in queues}
    spent = {o: (u[o].jobs if policy == "round_robin" else u[o].gpu_seconds) for o in queues}
    result = []
    while any(queues.values()):
        heads = [q[0] for q in queues.values() if q]
        best = min(heads, key=lambda j: (-j.priority, spent[j.owner], j.created_at, j.id))
        queues[best.owner].pop(0)
        result.append(best)
        spent[best.owner] += 1 if policy == "round_robin" else best.estimate
    return result


@pytest.mark.parametrize("policy", POLICIES)
def test_random_queues_match_the_literal_simulation(policy):
    rng = random.Random(11)
    for _ in range(100):
        jobs = random_queue(rng, "abcdefg", 30, [0, 0, 0, 0, 5], lambda: float(rng.choice([10, 60, 300])), 30)
        usage = {o: Usage(jobs=rng.randint(0, 4), gpu_seconds=float(rng.choice([0, 30, 300]))) for o in "abcde"}
        assert [j.id for j in order(policy, jobs, usage)] == [j.id for j in reference_order(policy, jobs, usage)]


@pytest.mark.parametrize("policy", ["round_robin", "fair_share"])
def test_two_hundred_participants_with_ten_jobs_each_take_turns(policy):
    # Owner 000 submitted all ten first, owner 199 last: still, everyone's first job comes before
    # anyone's second, and so on round by round.
    jobs = [job(f"{o:03d}", o * 10 + n) for o in range(200) for n in range(10)]
    ordered = order(policy, jobs, {})
    assert len(ordered) == 2000
    for turn in range(10):
        assert len({j.owner for j in ordered[turn * 200 : (turn + 1) * 200]}) == 200


def test_prompt_models_are_the_model_files_its_loaders_name():
    from jobs.policies import prompt_models

    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "ltx-2.safetensors"}},
        "2": {"class_type": "LoraLoader", "inputs": {"lora_name": "ws-001/style.safetensors", "model": ["1", 0]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat.safetensors is not a model here?"}},
        "4": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x.PTH"}},
    }
    assert prompt_models(prompt) == ["4x.PTH", "ltx-2.safetensors", "ws-001/style.safetensors"]
    assert prompt_models(None) == [] and prompt_models({"x": "junk"}) == []


def test_affinity_only_orders_the_free_workers_most_overlap_first():
    from jobs.policies import by_affinity

    loaded = {"a": ["x.safetensors"], "b": ["y.safetensors", "z.safetensors"], "c": []}
    assert by_affinity(["a", "b", "c"], ["y.safetensors", "z.safetensors"], loaded) == ["b", "a", "c"]
    assert by_affinity(["a", "b", "c"], ["q.safetensors"], loaded) == ["a", "b", "c"], "no match: as given"
    assert by_affinity(["a", "b", "c"], [], loaded) == ["a", "b", "c"]
    assert by_affinity(["c", "a"], ["x.safetensors"], loaded) == ["a", "c"]


def test_calibration_leaves_out_model_loads_and_keeps_each_gpus_own_speed():
    from jobs.policies import Sample, calibrate

    samples = (
        [Sample("video", "h100", 100.0, load_seconds=40.0)]  # the first run loaded the model
        + [Sample("video", "h100", 60.0)] * 3
        + [Sample("video", "l4", 180.0)] * 2
        + [Sample("image", "h100", 5.0)] * 3
    )
    calibrated = calibrate(samples, {"modal": [30.0, 50.0, 40.0]})
    assert calibrated.run_seconds("video", "h100") == 60.0, "the load is not part of the run"
    assert calibrated.run_seconds("video", "l4") == 60.0, "two runs on the L4 are not yet its own figure"
    assert calibrated.run_seconds("video") == 60.0 and calibrated.run_seconds("image") == 5.0
    assert calibrated.run_seconds("never-ran") == calibrated.overall == 60.0
    assert calibrated.cold_start("modal") == 40.0 and calibrated.cold_start("h100") == 0.0
    slower = calibrate([Sample("video", "l4", 180.0)] * 3 + samples)
    assert slower.run_seconds("video", "l4") == 180.0 and slower.run_seconds("video", "h100") == 60.0
    assert calibrate([]).run_seconds("video") == 30.0, "nothing measured yet: the default"


def test_the_waiting_chart_shows_a_burst_shorter_than_its_interval():
    """Five jobs that waited 20 s inside one minute peak at 5, not at what the minute's first
    second saw."""
    from jobs.stats import Run, waiting_over_time

    minute = timedelta(minutes=1)
    burst = [
        Run(
            owner=f"{n:03d}",
            worker="gpu",
            created_at=T0 + timedelta(seconds=10 + n),
            started_at=T0 + timedelta(seconds=30 + n),
            finished_at=T0 + timedelta(seconds=40 + n),
        )
        for n in range(5)
    ]
    times = [T0, T0 + minute, T0 + 2 * minute]
    assert waiting_over_time(burst, times, T0 + 3 * minute, minute) == [5, 0, 0]
    assert waiting_over_time(burst, times, T0 + 3 * minute) == [0, 0, 0], "sampled at instants it is missed"
    still = [Run(owner="001", worker=None, created_at=T0 - minute, started_at=None, finished_at=None)]
    assert waiting_over_time(still, times, T0 + 3 * minute, minute) == [1, 1, 1]
