"""The Django admin as the instructor meets it (jobs.admin): no add-job page, plain words, the console first."""

from jobs.models import Job
from tests.test_lifecycle import SIMPLE


def test_jobs_cannot_be_added_by_hand_and_the_lists_speak_plainly(staff, participants):
    job = Job.submit(participants[0], SIMPLE)
    job.run_next()
    assert staff.get("/admin/jobs/job/add/").status_code == 403
    jobs_page = staff.get("/admin/jobs/job/").content.decode()
    assert "Add job" not in jobs_page and ">next<" in jobs_page
    from django.utils import timezone

    assert timezone.localtime(job.created_at).strftime("%Y-%m-%d %H:%M:%S") in jobs_page, "times to the second"
    workspaces = staff.get("/admin/accounts/workspace/").content.decode()
    assert "5.0\xa0GB" in workspaces and "5368709120" not in workspaces
    change = staff.get(f"/admin/accounts/workspace/{participants[0].pk}/change/").content.decode()
    assert "007 is served at /user/007/" in change
    settings_page = staff.get("/admin/jobs/queuesettings/1/change/").content.decode()
    assert 'name="max_prompt_bytes"' in settings_page and "width: 12em" in settings_page


def test_rq_dashboard_pages_load_admin_actions_without_the_dropped_plugin(staff):
    for path in ("/admin/rq/queues/0/", "/admin/rq/queues/0/finished/", "/admin/rq/queues/0/failed/"):
        answer = staff.get(path)
        assert answer.status_code == 200, path
        page = answer.content.decode()
        assert ".actions()" not in page and "admin/js/actions.js" in page, path


def test_the_console_is_the_first_thing_on_the_admin_index(staff):
    page = staff.get("/admin/").content.decode()
    assert page.index('id="workshop-console"') < page.index('class="app-jobs module')
    assert 'href="/admin/console/"' in page
