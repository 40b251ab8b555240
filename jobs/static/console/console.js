// The instructor's live queue page. A websocket says "something changed"; the page then reads
// the state over HTTP. Without the socket it reads the state every few seconds instead.
// Built with the DOM API only (textContent): names come from participants.
(() => {
  const root = document.getElementById("console");
  if (!root) return;
  const stateUrl = root.dataset.stateUrl;
  const actionUrl = root.dataset.actionUrl;
  const csrf = root.querySelector("[name=csrfmiddlewaretoken]").value;
  const POLL_MS = 3000;
  let pollTimer = null;
  let scheduled = false;
  let state = null;
  let fetchedAt = 0;

  // `dataset` is a read-only property of every element: its entries are copied one by one.
  const el = (tag, { dataset, ...props } = {}, ...children) => {
    const node = document.createElement(tag);
    Object.assign(node, props);
    if (dataset) Object.assign(node.dataset, dataset);
    for (const child of children) node.append(child);
    return node;
  };
  const secs = (s) => {
    if (s == null) return "—";
    s = Math.max(Math.round(s), 0);
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    return m < 60 ? `${m} min ${s % 60} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
  };

  // The same words as the participants' badge (queue_badge.js about()).
  const about = (s) => {
    if (s == null) return "—";
    if (s <= 10) return "starting soon";
    if (s < 45) return `about ${Math.round(s / 5) * 5} s`;
    return `about ${Math.max(1, Math.round(s / 60))} min`;
  };

  async function post(path, body = {}) {
    const response = await fetch(actionUrl + path, {
      method: "POST",
      headers: { "X-CSRFToken": csrf, "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
    let data = {};
    try { data = await response.json(); } catch { /* an HTML error page */ }
    flash(data.message || (response.ok ? "Done." : `Failed (${response.status}).`));
    refresh();
  }

  function flash(text) {
    const box = document.getElementById("flash");
    box.textContent = text;
    box.hidden = false;
  }

  const button = (label, path, body, confirmText) => {
    const b = el("button", { type: "button", className: "button", textContent: label });
    b.addEventListener("click", () => {
      if (!confirmText || window.confirm(confirmText)) post(path, body);
    });
    return b;
  };

  function fill(tableId, rows, empty) {
    const body = document.querySelector(`#${tableId} tbody`);
    body.replaceChildren();
    if (!rows.length) {
      const cols = document.querySelectorAll(`#${tableId} thead th`).length;
      body.append(el("tr", { className: "empty" }, el("td", { colSpan: cols, textContent: empty })));
      return;
    }
    for (const cells of rows) {
      body.append(el("tr", {}, ...cells.map((c) => (c instanceof Node ? el("td", {}, c) : el("td", { textContent: c ?? "" })))));
    }
  }

  function render(data) {
    state = data;
    fetchedAt = Date.now();
    document.getElementById("policy").value = data.policy;
    const pause = document.getElementById("pause");
    pause.textContent = data.paused ? "Resume the queue" : "Pause the queue";
    const summary = document.getElementById("summary");
    summary.replaceChildren();
    if (data.paused) summary.append(el("span", { className: "paused-banner", textContent: "Paused: waiting jobs stay queued" }));
    summary.append(` ${data.running.length} running · ${data.waiting.length} waiting · ${data.slots} GPU slot(s) online`);

    fill("running", data.running.map((j) => {
      const progress = j.max ? el("progress", { max: j.max, value: j.value || 0 }) : document.createTextNode(j.state);
      const who = el("span", {}, `${j.username} `, el("a", { href: `/user/${j.slug}/`, textContent: `(${j.slug})` }));
      const actions = el("span", {},
        j.stopping ? `stopping (${j.stopping})…` : button("Cancel", `jobs/${j.id}/cancel`, {}, `Cancel ${j.username}'s running job? It stops on the GPU.`));
      return [`#${j.number}`, who, j.worker, j.node || "—", progress, el("span", { className: "elapsed", dataset: { base: j.elapsed_seconds ?? "" }, textContent: secs(j.elapsed_seconds) }), actions];
    }), "Nothing is running.");

    fill("waiting", data.waiting.map((j) => {
      const actions = el("span", {},
        button("Run next", `jobs/${j.id}/next`),
        button("Run now", `jobs/${j.id}/now`, {}, "Run it now? If no GPU is free, the newest running job is paused and continues first afterwards."),
        button("Cancel", `jobs/${j.id}/cancel`),
        button(`Cancel all of ${j.username}'s`, `workspaces/${j.slug}/cancel-waiting`, {}, `Cancel every waiting job of ${j.username}?`));
      return [String(j.position), `#${j.number}${j.workflow ? " " + j.workflow : ""}`, `${j.username} (${j.slug})`,
        j.priority, secs(j.waited_seconds), data.paused ? "paused" : about(j.eta_seconds), actions];
    }), "Nobody is waiting.");

    fill("failed", data.failed.map((j) => [`#${j.number}`, `${j.username} (${j.slug})`, j.error, button("Re-queue", `jobs/${j.id}/requeue`)]),
      "No failed jobs.");

    fill("workers", data.workers.map((w) => [w.name, w.provider, w.problem ? `${w.health}: ${w.problem}` : w.health,
      w.heartbeat_age == null ? "never" : `${secs(w.heartbeat_age)} ago`,
      w.current_job || "—", String(w.jobs_done), [w.gpu, w.vram].filter(Boolean).join(" · ") || "—", String(w.capacity),
      [w.cold_starts ? `${w.cold_start_median} s median of ${w.cold_starts}` : "",
        w.serverless ? `warm ${w.warm_minutes} min (${w.warm_cost.toFixed(2)})` : ""].filter(Boolean).join(" · ") || "—",
      w.price_per_hour.toFixed(2)]),
    "No GPU worker registered yet.");

    document.getElementById("announcement").textContent = data.announcement || "nothing";
    const warm = data.warm;
    document.getElementById("warm-plan").textContent = !warm.serverless
      ? (warm.count ? `none kept warm: no serverless GPU worker is registered (${warm.count} planned)` : "none kept warm: no serverless GPU worker is registered")
      : warm.count
      ? `${warm.now} of ${warm.count} kept warm` + (warm.from ? ` from ${warm.from}` : "") + (warm.until ? ` until ${warm.until}` : "")
      : "none kept warm";
  }

  async function refresh() {
    try {
      const response = await fetch(stateUrl, { headers: { Accept: "application/json" } });
      if (response.ok) render(await response.json());
    } catch (error) {
      console.warn("console state:", error);
    }
  }

  function schedule() {
    if (scheduled) return;
    scheduled = true;
    setTimeout(() => { scheduled = false; refresh(); }, 150);
  }

  function setLive(on) {
    const badge = document.getElementById("live");
    badge.textContent = on ? "live" : `reconnecting · refreshing every ${POLL_MS / 1000} s`;
    badge.className = `live ${on ? "on" : "off"}`;
    if (on && pollTimer) { clearInterval(pollTimer); pollTimer = null; }
    if (!on && !pollTimer) pollTimer = setInterval(refresh, POLL_MS);
  }

  function connect() {
    const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/console`);
    socket.onopen = () => { setLive(true); refresh(); };
    socket.onmessage = schedule;
    socket.onclose = () => { setLive(false); setTimeout(connect, 5000); };
  }

  // Elapsed times tick between updates.
  setInterval(() => {
    if (!state) return;
    const delta = (Date.now() - fetchedAt) / 1000;
    for (const cell of document.querySelectorAll(".elapsed")) {
      if (cell.dataset.base !== "") cell.textContent = secs(Number(cell.dataset.base) + delta);
    }
  }, 1000);

  document.getElementById("policy").addEventListener("change", (e) => post("policy", { policy: e.target.value }));
  document.getElementById("pause").addEventListener("click", () => post(state && state.paused ? "resume" : "pause"));
  const form = document.getElementById("announce");
  form.addEventListener("submit", (e) => { e.preventDefault(); post("announce", { text: form.text.value }); form.text.value = ""; });
  document.getElementById("announce-clear").addEventListener("click", () => post("announce", { text: "" }));
  const warmForm = document.getElementById("warm");
  warmForm.addEventListener("submit", (e) => {
    e.preventDefault();
    post("warm", { count: warmForm.count.value, from: warmForm.from.value, until: warmForm.until.value });
  });
  document.getElementById("warm-now").addEventListener("click", () =>
    post("warm", { count: Math.max(1, Number(warmForm.count.value)), from: "", until: warmForm.until.value }));

  setLive(false);
  refresh();
  connect();
})();
