// A workspace's first load opens the instructor's workshop workflow (the LTX-2 one by default),
// not ComfyUI's SD1.5 default graph. The server names it in the `Workshop.StartWorkflow`
// setting; once opened, the setting is cleared, so later loads keep the participant's own work.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

// The frontend restores (or creates) its first graph after every extension's setup, with
// network requests in between: a timer raced it and lost on 4 of 6 fresh visits. Ours waits
// until the frontend's own first load has returned (its afterConfigureGraph hook comes before
// the load makes its workflow the active tab, so the hook alone still raced it).
let frontendGraphLoaded;
const frontendGraph = new Promise((resolve) => { frontendGraphLoaded = resolve; });

function awaitFirstLoad() {
  const load = app.loadGraphData;
  app.loadGraphData = async function (...args) {
    app.loadGraphData = load;  // only the first load is watched
    try {
      return await load.apply(this, args);
    } finally {
      frontendGraphLoaded();
    }
  };
}

async function openStartWorkflow() {
  const path = await api.getSetting("Workshop.StartWorkflow");
  if (!path) return;
  const response = await api.getUserData("workflows/" + path);
  if (!response.ok) return;
  const graph = await response.json();
  await frontendGraph;
  await app.loadGraphData(graph, true, true, path.split("/").pop());
  await api.storeSetting("Workshop.StartWorkflow", "");
}

app.registerExtension({
  name: "workshop.startWorkflow",
  setup() {
    awaitFirstLoad();
    // Not awaited: the frontend's first graph comes only after every setup() has returned.
    openStartWorkflow().catch((error) => console.warn("workshop start workflow:", error));
  },
});
