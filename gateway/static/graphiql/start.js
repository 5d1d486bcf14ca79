// Starts GraphiQL (vendor/graphiql, with window.React and window.ReactDOM) on the page
// gateway/templates/graphiql.html: one tab per example query the page carries, queries sent
// to the page's own URL. Loaded by a <script> tag after the libraries; nothing else to fetch.
(function () {
  "use strict";
  var examples = JSON.parse(document.getElementById("graphiql-examples").textContent);
  var fetcher = GraphiQL.createFetcher({
    url: window.location.origin + window.location.pathname,
  });
  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultTabs: examples.map(function (example) {
        return { query: example.query };
      }),
      // Headers (say, Authorization: Bearer ...) stay in the page, never in the browser's storage.
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false,
      inputValueDeprecation: true,
    })
  );
})();
