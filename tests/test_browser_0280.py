"""A GPU host on ComfyUI 0.28.0 (the double with its recorded catalog and 89 blueprints) in the
real frontend: its worker comes online with default settings, the blueprints reach the node
library, and one placed from there runs through the queue."""

import pytest

from jobs.models import Catalog, ExtensionFile, JobState
from tests import browsing
from tests.test_browser import LTX2_MODELS, open_workspace, queue_button, wait_for_job

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

browser = browsing.browser
ARTIFACTS = browsing.ARTIFACTS
BLUEPRINT = "Text to Video (LTX 2.0)"
PLACED = f"() => window.app.graph._nodes.filter(n => n.subgraph && n.title === {BLUEPRINT!r}).length"


def test_a_0280_host_comes_online_and_a_blueprint_from_the_node_library_runs(browser, live_app, participants):
    from scripts.comfyui_double import ComfyUIDouble

    ARTIFACTS.mkdir(exist_ok=True)
    with (
        ComfyUIDouble(version="0.28.0", model_files=LTX2_MODELS, stand_ins=True) as double,
        live_app.gpu_worker(double.url),
    ):  # waits for it to come online, default settings
        catalog = Catalog.objects.get(worker__name="gpu-1")
        published = ExtensionFile.objects.filter(worker=catalog.worker, path__startswith="/global_subgraphs/")
        page, watch = open_workspace(browser, live_app, "user001", "001")
        # The start workflow (LTX-2 text to video) holds the same subgraph: wait until it is in.
        page.wait_for_function(f"() => ({PLACED})() === 1", timeout=20_000)
        page.get_by_test_id("node-library-tab-button").click()
        page.get_by_text("Comfy Blueprints", exact=True).wait_for(timeout=15_000)
        page.get_by_placeholder("Search...").first.fill(BLUEPRINT)
        # Dragged from the library onto an empty spot of the canvas.
        page.get_by_text(BLUEPRINT, exact=True).first.drag_to(
            page.locator("#graph-canvas"), target_position={"x": 700, "y": 150}
        )
        page.wait_for_function(f"() => ({PLACED})() === 2", timeout=15_000)
        page.screenshot(path=str(ARTIFACTS / "09-blueprint-placed.png"))
        page.get_by_test_id("node-library-tab-button").click()
        page.evaluate("""() => {
          const g = window.app.graph, blueprint = g._nodes.filter(n => n.subgraph).at(-1);
          for (const n of g._nodes.filter(n => n !== blueprint)) g.remove(n);  // only the placed one runs
          const save = LiteGraph.createNode('SaveVideo'); save.pos = [blueprint.pos[0] + 500, blueprint.pos[1]];
          g.add(save); blueprint.connect(0, save, 0); g.setDirtyCanvas(true, true);
        }""")
        queue_button(page).click()
        job = wait_for_job(participants[0], 1, timeout=60)
        failed, errors = watch.ours()

    assert catalog.comfyui_version == "0.28.0"
    assert len(catalog.data["global_subgraphs"]) == 89 and published.count() == 89
    assert all("data" not in entry for entry in catalog.data["global_subgraphs"].values()), "the index only"
    assert job.state == JobState.COMPLETED, job.error
    classes = {node["class_type"] for node in job.prompt.values()}
    assert {"SaveVideo", "LTXVConditioning", "CheckpointLoaderSimple"} <= classes, classes
    assert failed == [], f"requests that failed because of the platform: {failed}"
    assert errors == [], f"console errors caused by the platform: {errors}"
    assert watch.outside == [] and watch.escaped == []


def test_a_workflow_in_app_mode_shows_its_inputs_runs_through_the_queue_and_shows_its_output(
    browser, live_app, participants
):
    """Frontend 1.53.6's App Mode (extra.linearMode, extra.linearData) in a workspace: the
    instructor's hello workflow made an app with two inputs and its SaveImage as output."""
    import json
    from pathlib import Path

    from scripts.comfyui_double import ComfyUIDouble

    ARTIFACTS.mkdir(exist_ok=True)
    workflow = json.loads(
        (Path(__file__).resolve().parents[1] / "jobs" / "shipped_workflows" / "hello.json").read_text()
    )
    workflow.setdefault("extra", {}).update(
        linearMode=True, linearData={"inputs": [[1, "color"], [1, "width"]], "outputs": [3]}
    )
    with (
        ComfyUIDouble(version="0.28.0", model_files=LTX2_MODELS, stand_ins=True) as double,
        live_app.gpu_worker(double.url),
    ):
        # Saved in the participant's workflows and named as the one their first visit opens,
        # as an instructor hands out an app.
        alice = live_app.login("user001")
        headers = {"Origin": live_app.url, "X-CSRFToken": alice.cookies["csrftoken"]}
        saved = alice.post(
            f"{live_app.url}/user/001/api/userdata/workflows%2Fhello-app.json",
            json=workflow,
            headers=headers,
            timeout=10,
        )
        named = alice.post(
            f"{live_app.url}/user/001/api/settings/Workshop.StartWorkflow",
            json="hello-app.json",
            headers=headers,
            timeout=10,
        )
        assert saved.status_code == 200 and named.status_code == 200, (saved.text, named.text)
        page, watch = open_workspace(browser, live_app, "user001", "001", wait_start=False)
        page.wait_for_function(
            "() => window.app.extensionManager.workflow.activeWorkflow?.filename === 'hello-app'", timeout=30_000
        )
        page.get_by_text("Welcome to Apps").wait_for(timeout=15_000)
        page.get_by_role("button", name="Skip").click()
        width = page.get_by_text("width", exact=True).locator("xpath=../..").locator("input").first
        width.fill("96")
        width.press("Enter")
        page.screenshot(path=str(ARTIFACTS / "10-app-mode.png"))
        page.get_by_role("button", name="Run").last.click()
        job = wait_for_job(participants[0], 1, timeout=60)
        saved = job.outputs.get("3", {}).get("images", [{}])[0].get("filename", "")
        page.locator(f"img[src*='{saved}']").first.wait_for(timeout=20_000)
        page.screenshot(path=str(ARTIFACTS / "11-app-mode-output.png"))
        failed, errors = watch.ours()

    assert job.state == JobState.COMPLETED, job.error
    assert job.prompt["1"]["inputs"]["width"] == 96, "the app's input reached the run"
    assert saved.startswith("workshop_hello")
    assert failed == [], f"requests that failed because of the platform: {failed}"
    assert errors == [], f"console errors caused by the platform: {errors}"
    assert watch.outside == [] and watch.escaped == []
