// The login page's "try again in N s" counts down, and says when a try is possible (login.html).
const wait = document.querySelector("[data-wait]");
if (wait) {
  const until = Date.now() + 1000 * Number(wait.dataset.wait);
  const tick = () => {
    const left = Math.ceil((until - Date.now()) / 1000);
    wait.textContent = wait.textContent.replace(/try again in (\d+ s|a moment|now)/,
      left > 0 ? `try again in ${left} s` : "try again now");
    if (left > 0) setTimeout(tick, 1000);
  };
  tick();
}
