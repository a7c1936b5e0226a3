// Search over the documentation's titles and headings, from the index in the page (no network).
(function () {
  "use strict";
  function ready() {
    var input = document.getElementById("docs-search");
    var results = document.getElementById("docs-results");
    var data = document.getElementById("docs-index");
    if (!input || !results || !data) { return; }
    var entries = [];
    JSON.parse(data.textContent).forEach(function (page) {
      entries.push({ url: page.url, text: page.title, where: "" });
      page.headings.forEach(function (heading) {
        entries.push({ url: page.url + "#" + heading.id, text: heading.text, where: page.title });
      });
    });
    input.addEventListener("input", function () {
      var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      results.textContent = "";
      if (!words.length) { return; }
      var found = entries.filter(function (entry) {
        var text = (entry.text + " " + entry.where).toLowerCase();
        return words.every(function (word) { return text.indexOf(word) !== -1; });
      }).slice(0, 12);
      if (!found.length) {
        var none = document.createElement("li");
        none.textContent = "Nothing found.";
        results.appendChild(none);
      }
      found.forEach(function (entry) {
        var item = document.createElement("li");
        var link = document.createElement("a");
        link.href = entry.url;
        link.textContent = entry.text;
        item.appendChild(link);
        if (entry.where) {
          var where = document.createElement("span");
          where.className = "where";
          where.textContent = entry.where;
          item.appendChild(where);
        }
        results.appendChild(item);
      });
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", ready); } else { ready(); }
})();
