// My models: upload in parts, fetch by URL with progress, delete (templates/own_models.html).
const base = document.body.dataset.base;
const PART = Number(document.body.dataset.partBytes);
const status = document.getElementById("status");
const bar = document.getElementById("progress");
const folder = () => document.getElementById("folder").value;
function say(text, error) { status.textContent = text; status.classList.toggle("error", !!error); }
function show(done, total) { bar.hidden = false; bar.max = total || 1; bar.value = done; }

document.getElementById("file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  for (let offset = 0; ; offset += PART) {
    const part = file.slice(offset, offset + PART);
    const final = offset + PART >= file.size ? 1 : 0;
    const query = new URLSearchParams({ folder: folder(), name: file.name, offset, size: file.size, final });
    const answer = await fetch(`${base}upload?${query}`, { method: "PUT", body: part });
    const body = await answer.json();
    if (!answer.ok) return say(body.error, true);
    show(Math.min(offset + PART, file.size), file.size);
    say(`${file.name}: ${Math.round(100 * Math.min(offset + PART, file.size) / file.size)} %`);
    if (final) { say(`${body.model.comfy_name} is ready.`); return location.reload(); }
  }
});

document.getElementById("fetch").addEventListener("click", async () => {
  const answer = await fetch(`${base}fetch`, { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ url: document.getElementById("url").value, folder: folder() }) });
  if (!answer.ok) return say((await answer.json()).error, true);
  const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = JSON.parse(buffer.slice(0, newline));
      buffer = buffer.slice(newline + 1);
      if (line.error) return say(line.error, true);
      if (line.model) { say(`${line.model.comfy_name} is ready.`); return location.reload(); }
      show(line.received, line.total);
      say(`Fetching… ${(line.received / 2 ** 20).toFixed(0)} MB` + (line.total ? ` of ${(line.total / 2 ** 20).toFixed(0)} MB` : ""));
    }
  }
});

for (const button of document.querySelectorAll("button.delete")) {
  button.addEventListener("click", async () => {
    const answer = await fetch(`${base}${button.dataset.id}/delete`, { method: "POST" });
    if (answer.ok) location.reload(); else say((await answer.json()).error, true);
  });
}
