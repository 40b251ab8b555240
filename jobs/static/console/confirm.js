// A console form with data-confirm asks first (a reset changes a participant's card).
document.addEventListener("submit", (event) => {
  const text = event.target.dataset && event.target.dataset.confirm;
  if (text && !window.confirm(text)) event.preventDefault();
});
