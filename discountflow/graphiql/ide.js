// GraphiQL for the DiscountFlow API. Put your key in the Headers tab: it is sent with every
// request as "Authorization: Bearer <key>" and is never stored by this page.
(function () {
  "use strict";
  var root = document.getElementById("graphiql");
  var fetcher = GraphiQL.createFetcher({ url: root.getAttribute("data-endpoint") });
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
  ReactDOM.createRoot(root).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: defaultQuery,
      defaultHeaders: '{\n  "Authorization": "Bearer "\n}',
      shouldPersistHeaders: false,
      isHeadersEditorEnabled: true,
      defaultEditorToolsVisibility: "headers"
    })
  );
})();
