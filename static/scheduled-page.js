// The scheduled page: choose every job shown at once, and a cancel of the chosen ones asks first,
// saying how many.
const choice = document.getElementById("scheduled-choice");
const boxes = () => [...document.querySelectorAll('input[name="job"][form="scheduled-choice"]')];

document.getElementById("choose-all")?.addEventListener("change", (change) => {
  for (const box of boxes()) box.checked = change.target.checked;
});

choice?.addEventListener("submit", (submit) => {
  const n = boxes().filter((box) => box.checked).length;
  if (n === 0 || !window.confirm(`Cancel ${n} scheduled job${n === 1 ? "" : "s"}?`)) submit.preventDefault();
});
