"""jobs.queue: the estimates every badge and the console show."""

import json

from gpuworker.protocol import ran_from_cache
from jobs import queue
from jobs.models import Job, JobState
from tests.test_lifecycle import SIMPLE


def test_cached_re_runs_do_not_make_etas_shrink(participants):
    prompt_ids = list(SIMPLE)
    for secs, cached in ((60.0, False), (62.0, False), (0.05, True), (0.04, True), (0.03, True)):
        job = Job.submit(participants[0], SIMPLE, workflow_name="wf")
        messages = [["execution_cached", {"nodes": prompt_ids if cached else [], "prompt_id": str(job.pk)}]]
        Job.objects.filter(pk=job.pk).update(state=JobState.RUNNING)
        job.refresh_from_db()
        job.mark_completed({}, messages, secs)
    per_workflow, overall = queue.estimates()
    assert per_workflow["wf"] == 61.0 and overall == 61.0
    assert ran_from_cache(SIMPLE, [["execution_cached", {"nodes": ["1", "2"]}]])
    assert not ran_from_cache(SIMPLE, [["execution_cached", {"nodes": ["1"]}]])
    assert not ran_from_cache(SIMPLE, json.loads("[]"))
