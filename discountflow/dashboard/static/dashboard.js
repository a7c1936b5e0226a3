// DiscountFlow dashboard: a copy button and the live route preview. Everything works without it.
"use strict";

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const field = document.querySelector(button.dataset.copy);
  const status = button.parentElement.querySelector(".copied");
  try {
    await navigator.clipboard.writeText(field.value);
    if (status) status.textContent = "Copied.";
  } catch {
    field.select();
    if (status) status.textContent = "Select the key and copy it (Ctrl+C).";
  }
});

function previewRoute(form) {
  const target = document.getElementById("route-preview");
  const data = new FormData(form);
  data.delete("action");
  fetch(form.dataset.preview, {
    method: "POST",
    body: data,
    credentials: "same-origin",
    headers: { "X-CSRFToken": document.querySelector('meta[name="csrf-token"]').content },
  })
    .then((response) => (response.ok ? response.text() : Promise.reject(response.status)))
    .then((html) => { target.innerHTML = html; })
    .catch(() => { target.textContent = "The route could not be previewed just now."; });
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("approval-form");
  if (!form) return;
  let timer = null;
  const schedule = () => { clearTimeout(timer); timer = setTimeout(() => previewRoute(form), 250); };
  form.addEventListener("input", schedule);
  form.addEventListener("change", schedule);
  previewRoute(form);
});
