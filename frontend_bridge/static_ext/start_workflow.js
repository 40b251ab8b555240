// A workspace's first load opens the instructor's workshop workflow (the LTX-2 one by default),
// not ComfyUI's SD1.5 default graph. The server names it in the `Workshop.StartWorkflow`
// setting; once opened, the setting is cleared, so later loads keep the participant's own work.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

async function openStartWorkflow() {
  const path = await api.getSetting("Workshop.StartWorkflow");
  if (!path) return;
  const response = await api.getUserData("workflows/" + path);
  if (!response.ok) return;
  const graph = await response.json();
  await app.loadGraphData(graph, true, true, path.split("/").pop());
  await api.storeSetting("Workshop.StartWorkflow", "");
}

app.registerExtension({
  name: "workshop.startWorkflow",
  setup() {
    // The frontend restores (or creates) the first workflow right after the extensions'
    // setup: open ours once that is done, so it is not replaced by the default graph.
    setTimeout(() => openStartWorkflow().catch((error) => console.warn("workshop start workflow:", error)), 0);
  },
});
