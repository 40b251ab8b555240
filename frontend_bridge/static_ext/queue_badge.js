// Workshop queue badge: "Position 3 of 8 · about 2 min" while a run waits, the GPU worker's
// name while it runs. Fed by the platform's `workshop.queue` websocket messages; uses only the
// frontend's extension API (no patching of its files).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const STYLE = `
#workshop-queue-badge { position: fixed; left: 50%; bottom: 14px; transform: translateX(-50%);
  z-index: 1000; padding: 6px 14px; border-radius: 8px; font: 13px/1.3 Inter, Arial, sans-serif;
  background: var(--comfy-menu-bg, #353535); color: var(--fg-color, #fff);
  border: 1px solid var(--border-color, #4e4e4e); box-shadow: 0 2px 10px rgba(0,0,0,.35);
  pointer-events: none; transition: opacity .2s; }
#workshop-queue-badge[hidden] { display: block; opacity: 0; }
#workshop-queue-badge.offline { border-color: #d9822b; }
/* Comfy.org accounts (sign-in, credits, API nodes) are not part of a workshop: participants
   log in to the workshop, and Workshop > Log out signs them out. */
[data-testid="login-button"], [data-testid="login-button-popover"],
[data-nav-id="user"], [data-nav-id="credits"], [data-nav-id="subscription"] { display: none !important; }
`;

// A workshop runs in a closed network and its ComfyUI version is fixed by the operator: the
// frontend's release check against api.comfy.org would only fail (and leak that the workshop
// exists). Answer it here with "no releases".
// The same for the other hosts it may look things up on (the node registry, model files'
// sizes for the getting-started cards): none is reachable from a workshop, and the page's CSP
// would block them with an error in the console.
const OFFLINE_HOSTS = ["https://api.comfy.org/", "https://huggingface.co/", "https://civitai.com/"];
const realFetch = window.fetch.bind(window);
window.fetch = (input, init) => {
  const url = typeof input === "string" ? input : input?.url ?? String(input);
  if (url.startsWith("https://api.comfy.org/releases")) {
    return Promise.resolve(new Response("[]", { status: 200, headers: { "Content-Type": "application/json" } }));
  }
  if (OFFLINE_HOSTS.some((host) => url.startsWith(host))) {
    return Promise.resolve(new Response(JSON.stringify({ error: "not reachable from the workshop" }),
      { status: 404, headers: { "Content-Type": "application/json" } }));
  }
  return realFetch(input, init);
};
const realOpen = XMLHttpRequest.prototype.open;
XMLHttpRequest.prototype.open = function (method, url, ...rest) {
  if (String(url).startsWith("https://api.comfy.org/releases")) url = api.apiURL("/workshop/releases");
  return realOpen.call(this, method, url, ...rest);
};

// "starting soon" only when it is; otherwise how long, as people say it. The estimate comes from
// measured runs of the same workflow (jobs.policies.calibrate).
export function about(seconds) {
  if (seconds == null) return "";
  if (seconds <= 10) return "starting soon";
  if (seconds < 45) return `about ${Math.round(seconds / 5) * 5} s`;
  return `about ${Math.max(1, Math.round(seconds / 60))} min`;
}

function minutes(seconds) {
  return seconds == null ? "" : ` · ${about(seconds)}`;
}

export function describe(data) {
  const running = data.running || [];
  const waiting = data.waiting || [];
  if (running.length) {
    const worker = running[0].worker;
    return { text: worker ? `Running on ${worker}` : "Starting on a GPU…", offline: false };
  }
  if (waiting.length) {
    const first = waiting[0];
    if (data.paused) {
      const more = waiting.length > 1 ? ` (+${waiting.length - 1} more of yours)` : "";
      return { text: `Position ${first.position} of ${first.of} · Paused by the instructor${more}`, offline: true };
    }
    if (!data.workers_online) {
      return { text: `Position ${first.position} of ${first.of} · no GPU worker online yet`, offline: true };
    }
    const more = waiting.length > 1 ? ` (+${waiting.length - 1} more of yours)` : "";
    return { text: `Position ${first.position} of ${first.of}${minutes(first.eta_seconds)}${more}`, offline: false };
  }
  if (!data.workers_online) return { text: "No GPU worker online", offline: true };
  return null;
}

function addStyle() {
  if (document.getElementById("workshop-style")) return;
  const style = document.createElement("style");
  style.id = "workshop-style";
  style.textContent = STYLE;
  document.head.appendChild(style);
}

// Django signs out on a POST with its CSRF token (the csrftoken cookie of the login).
function logOut() {
  const token = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="))?.slice("csrftoken=".length);
  if (!token) {
    window.location.assign("/accounts/logout/");  // a page with the button
    return;
  }
  const form = document.createElement("form");
  form.method = "post";
  form.action = "/accounts/logout/";
  const input = document.createElement("input");
  input.type = "hidden";
  input.name = "csrfmiddlewaretoken";
  input.value = decodeURIComponent(token);
  form.append(input);
  document.body.append(form);
  form.submit();
}

function badge() {
  let el = document.getElementById("workshop-queue-badge");
  if (!el) {
    addStyle();
    el = document.createElement("div");
    el.id = "workshop-queue-badge";
    el.setAttribute("role", "status");
    el.hidden = true;
    document.body.appendChild(el);
  }
  return el;
}

// Why a job moved without the participant doing anything: it lost its GPU and is back at the
// front, the instructor moved, paused or cancelled it, or it failed without a word from ComfyUI.
// A toast says why; the badge goes on showing where the run stands now.
function notice(data) {
  toast(data.state === "failed" ? "error" : "info", "Workshop", data.text, 8000);
}

function toast(severity, summary, detail, life) {
  try {
    app.extensionManager.toast.add({ severity, summary, detail, ...(life ? { life } : {}) });
  } catch (error) {
    console.warn("workshop toast:", error);
  }
}

// The instructor's announcement: a toast that stays until closed, sent again to every tab that
// connects later (shown once per page).
const announced = new Set();
function announcement(data) {
  if (!data.text || announced.has(data.id)) return;
  announced.add(data.id);
  toast("info", "From the instructor", data.text, 0);
}

// A workflow the instructor pushed: it is in the Workflows sidebar under workshop/ at once, and
// opens as a new tab when the instructor asked for that.
async function pushedWorkflow(data) {
  try {
    await app.extensionManager.workflow.syncWorkflows();
    if (data.open) {
      const response = await api.getUserData(data.path);
      if (response.ok) await app.loadGraphData(await response.json(), true, true, data.path.replace(/^workflows\//, ""));
    }
    toast("info", "Workshop", `The instructor shared a workflow: ${data.name} (Workflows > workshop)`, 8000);
  } catch (error) {
    console.warn("workshop pushed workflow:", error);
  }
}

// Staff opened this workspace from the console to help its participant.
function helpBanner() {
  if (!new URLSearchParams(location.search).has("workshop_help")) return;
  const el = document.createElement("div");
  el.id = "workshop-help-banner";
  el.setAttribute("role", "status");
  el.textContent = "Help mode: this is a participant's workspace. What you run here is queued as theirs.";
  el.style.cssText = "position:fixed;top:0;left:50%;transform:translateX(-50%);z-index:1001;padding:4px 12px;" +
    "background:#d9822b;color:#fff;border-radius:0 0 6px 6px;font:13px Arial,sans-serif;pointer-events:none";
  document.body.appendChild(el);
}

// A serverless GPU starting for this participant's run (the worker says so about once a
// second): "Starting a GPU… 42 s", counting here between its messages, until the run's own
// first message arrives.
let starting = null;
let lastQueue = null;
let ticker = null;

function gpuStarting(data) {
  starting = { prompt_id: data.prompt_id, seconds: Number(data.seconds) || 0, at: Date.now() };
  if (!ticker) ticker = setInterval(() => lastQueue && show(lastQueue), 1000);
  if (lastQueue) show(lastQueue);
}

function runMoved(event) {
  if (starting && event.detail?.prompt_id === starting.prompt_id) {
    starting = null;
    clearInterval(ticker);
    ticker = null;
    if (lastQueue) show(lastQueue);
  }
}

function show(data) {
  lastQueue = data;
  const el = badge();
  let state = describe(data);
  if (starting && (data.running || []).length) {
    const seconds = Math.round(starting.seconds + (Date.now() - starting.at) / 1000);
    state = { text: `Starting a GPU… ${seconds} s`, offline: false };
  }
  el.hidden = !state;
  if (state) {
    el.textContent = state.text;
    el.classList.toggle("offline", state.offline);
  }
}

// Registered when the module loads, before the websocket opens: the frontend reports any
// message type nobody listens for as an error.
api.addEventListener("workshop.queue", (event) => show(event.detail));
api.addEventListener("workshop.notice", (event) => notice(event.detail));
api.addEventListener("workshop.announcement", (event) => announcement(event.detail));
api.addEventListener("workshop.workflow", (event) => pushedWorkflow(event.detail));
api.addEventListener("workshop.gpu_starting", (event) => gpuStarting(event.detail));
for (const type of ["execution_start", "executing", "progress", "execution_success", "execution_error",
  "execution_interrupted"]) {
  api.addEventListener(type, runMoved);
}

app.registerExtension({
  name: "workshop.queueBadge",
  // "Workshop > My outputs" in the top menu: every picture and video of this workspace;
  // "Workshop > Change password": the participant's own password page.
  commands: [
    {
      id: "Workshop.MyOutputs",
      label: "My outputs",
      icon: "pi pi-images",
      function: () => window.open(api.api_base + "/outputs/", "_blank"),
    },
    {
      id: "Workshop.MyModels",
      label: "My models",
      icon: "pi pi-box",
      function: () => window.open(api.api_base + "/my-models/", "_blank"),
    },
    {
      id: "Workshop.ChangePassword",
      label: "Change password",
      icon: "pi pi-key",
      function: () => window.open("/accounts/password/", "_blank"),
    },
    {
      id: "Workshop.LogOut",
      label: "Log out",
      icon: "pi pi-sign-out",
      function: logOut,
    },
  ],
  menuCommands: [{
    path: ["Workshop"],
    commands: ["Workshop.MyOutputs", "Workshop.MyModels", "Workshop.ChangePassword", "Workshop.LogOut"],
  }],
  async setup() {
    addStyle();
    helpBanner();
    // The first push may have arrived before the page was ready: ask once.
    try {
      const response = await api.fetchApi("/workshop/queue");
      if (response.ok) show(await response.json());
    } catch (error) {
      console.warn("workshop queue badge:", error);
    }
  },
});
