// Starts GraphiQL (vendor/graphiql, with window.React and window.ReactDOM) on the page
// gateway/templates/graphiql.html: one tab per example query the page carries, queries sent
// to the page's own URL. Loaded by a <script> tag after the libraries; nothing else to fetch.
//
// When the gateway needs a token (the body says data-auth="token"), the page asks for one
// before it starts GraphiQL, keeps it in this tab's session storage (the dashboard's too) and
// sends it as "Authorization: Bearer <token>" with every request GraphiQL makes, unless the
// Headers editor sets an Authorization of its own. A 401 for the kept token asks again.
(function () {
  "use strict";
  var TOKEN_KEY = "usage-gateway.token";
  var form = document.getElementById("token-form");
  var input = document.getElementById("token");
  var problem = document.getElementById("token-problem");
  var started = false;

  function storedToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || null;
    } catch (error) {
      return null;
    }
  }

  function askForToken(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    problem.textContent = message || "";
    form.hidden = false;
    input.focus();
  }

  function gatewayFetch(url, init) {
    var options = Object.assign({}, init);
    var headers = new Headers(options.headers || {});
    var typed = headers.has("Authorization"); // from the Headers editor: sent as it is
    var token = typed ? null : storedToken();
    if (token) headers.set("Authorization", "Bearer " + token);
    options.headers = headers;
    return window.fetch(url, options).then(function (response) {
      if (response.status === 401 && !typed) {
        askForToken(
          token
            ? "The gateway refused the token (HTTP 401): it may be mistyped or withdrawn."
            : "The gateway needs a token (HTTP 401)."
        );
      }
      return response;
    });
  }

  // GraphiQL's own shouldPersistHeaders keeps headers out of its tabs, but its history still
  // writes each run's headers to localStorage (graphiql:queries). Every write GraphiQL makes
  // goes through this storage, which drops any "headers" member of a JSON value and never
  // keeps the Headers editor's text, so a token typed in there stays in the page.
  var NAMESPACE = "graphiql:";
  function withoutHeaders(key, value) {
    if (key === NAMESPACE + "headers") return "";
    var parsed;
    try {
      parsed = JSON.parse(value);
    } catch (error) {
      return value;
    }
    if (parsed === null || typeof parsed !== "object") return value;
    return JSON.stringify(parsed, function (name, member) {
      return name === "headers" ? null : member;
    });
  }
  var headerlessStorage = {
    getItem: function (key) {
      return localStorage.getItem(key);
    },
    setItem: function (key, value) {
      localStorage.setItem(key, withoutHeaders(key, String(value)));
    },
    removeItem: function (key) {
      localStorage.removeItem(key);
    },
    get length() {
      return Object.keys(localStorage).filter(function (key) {
        return key.indexOf(NAMESPACE) === 0;
      }).length;
    },
    clear: function () {
      Object.keys(localStorage).forEach(function (key) {
        if (key.indexOf(NAMESPACE) === 0) localStorage.removeItem(key);
      });
    },
  };

  function start() {
    started = true;
    var examples = JSON.parse(document.getElementById("graphiql-examples").textContent);
    var fetcher = GraphiQL.createFetcher({
      url: window.location.origin + window.location.pathname,
      fetch: gatewayFetch,
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
        storage: headerlessStorage,
        inputValueDeprecation: true,
      })
    );
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var token = input.value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    input.value = "";
    form.hidden = true;
    // GraphiQL read the schema without the token: start it again, with it.
    if (started) window.location.reload();
    else start();
  });

  if (document.body.dataset.auth === "token" && !storedToken()) {
    document.getElementById("graphiql").textContent = "";
    askForToken("");
  } else {
    start();
  }
})();
