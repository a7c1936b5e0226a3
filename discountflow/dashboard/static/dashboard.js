// DiscountFlow dashboard: a copy button, searchable product pickers with the book's list price,
// and the live route preview. Everything works without it.
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

// Each line's product: a plain select without JavaScript; here, a field searching the price
// book by SKU or name (the browser's suggestions from the form's datalist).
function searchableProducts(form) {
  for (const select of form.querySelectorAll("select[data-line-product]")) {
    const input = document.createElement("input");
    input.name = select.name;
    input.id = select.id;
    input.value = select.value;
    input.setAttribute("list", "price-book");
    input.setAttribute("autocomplete", "off");
    input.setAttribute("aria-label", select.getAttribute("aria-label"));
    input.placeholder = select.options[0].textContent + " — type a SKU or name";
    input.dataset.lineProduct = "";
    select.replaceWith(input);
  }
}

// The list price a line takes from the book, in the request's currency (read-only); the typed
// list price is for custom lines only.
function showListPrices(form) {
  const book = document.querySelector("[data-price-book]");
  const currency = form.elements.currency.value;
  for (const row of form.querySelectorAll("tr.line")) {
    const product = row.querySelector("[data-line-product]");
    const output = row.querySelector("[data-line-list-price]");
    const typed = row.querySelector("input[name$='-unit_list_price']");
    const sku = product.value.trim();
    const option = book && sku ? [...book.options].find((each) => each.value === sku) : null;
    const prices = option ? JSON.parse(option.dataset.prices) : null;
    output.textContent = prices ? (prices[currency] || `No ${currency} price`) : "";
    if (typed) {
      typed.disabled = Boolean(sku);
      typed.hidden = Boolean(sku);
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("approval-form");
  if (!form) return;
  searchableProducts(form);
  showListPrices(form);
  form.addEventListener("input", () => showListPrices(form));
  form.addEventListener("change", () => showListPrices(form));
  let timer = null;
  const schedule = () => { clearTimeout(timer); timer = setTimeout(() => previewRoute(form), 250); };
  form.addEventListener("input", schedule);
  form.addEventListener("change", schedule);
  previewRoute(form);
});
