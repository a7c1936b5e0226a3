// GraphiQL for the DiscountFlow API. Put your key in the Headers tab: it is sent with every
// request as "Authorization: Bearer <key>" and is never stored by this page.
//
// Nothing is sent before the Headers tab holds a key: without one the server could only answer
// invalid_api_key, so the fetcher answers itself with the page's hint instead. Once a key is
// typed or pasted (and the typing has paused), GraphiQL is handed a fresh fetcher, which makes it
// fetch the schema again, now with the key.
(function () {
  "use strict";
  var root = document.getElementById("graphiql");
  var hint = document.getElementById("key-hint");
  var hintText = hint.textContent.trim();
  var server = GraphiQL.createFetcher({ url: root.getAttribute("data-endpoint") });
  var SETTLE_MS = 400;  // a key typed by hand is fetched with once, not once per character
  var defaultHeaders = '{\n  "Authorization": "Bearer "\n}';
  var defaultQuery = [
    "# Put your API key in the Headers tab below, then run this (Ctrl-Enter).",
    "{",
    "  me { id organization { name } rateLimit { limit windowSeconds } }",
    "  approvals(first: 5) {",
    "    edges { node { id title status amount currency } }",
    "    pageInfo { hasNextPage endCursor }",
    "  }",
    "}",
    ""
  ].join("\n");

  // An Authorization header with something after "Bearer ": a key to send, right or wrong.
  function hasKey(headers) {
    if (!headers || typeof headers !== "object") return false;
    return Object.keys(headers).some(function (name) {
      var value = headers[name];
      return name.toLowerCase() === "authorization" && typeof value === "string" &&
        /^\s*bearer\s+\S/i.test(value);
    });
  }

  function headersOf(text) {
    try {
      return JSON.parse(text || "{}");
    } catch (error) {
      return null;  // GraphiQL itself refuses headers that are not JSON
    }
  }

  function guarded() {
    return function (params, options) {
      if (!hasKey(options && options.headers)) {
        return Promise.resolve({ errors: [{ message: hintText }] });
      }
      return server(params, options);
    };
  }

  var schemaLoaded = false;
  var fetcher = guarded();
  var settling = null;
  var reactRoot = ReactDOM.createRoot(root);

  function onSchemaChange() {
    schemaLoaded = true;
  }

  function onEditHeaders(text) {
    var keyed = hasKey(headersOf(text));
    hint.hidden = keyed;
    clearTimeout(settling);
    if (keyed && !schemaLoaded) {
      settling = setTimeout(function () {
        fetcher = guarded();  // a new fetcher: GraphiQL fetches the schema with it
        render();
      }, SETTLE_MS);
    }
  }

  function render() {
    reactRoot.render(
      React.createElement(GraphiQL, {
        fetcher: fetcher,
        defaultQuery: defaultQuery,
        defaultHeaders: defaultHeaders,
        shouldPersistHeaders: false,
        isHeadersEditorEnabled: true,
        defaultEditorToolsVisibility: "headers",
        onEditHeaders: onEditHeaders,
        onSchemaChange: onSchemaChange
      })
    );
  }

  hint.hidden = hasKey(headersOf(defaultHeaders));
  render();
})();
