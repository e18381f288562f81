/*
 * The bff playground: GraphiQL mounted into #graphiql. Every script and style comes from
 * /static/graphiql (no CDN). Queries and mutations go over HTTP POST to /graphql;
 * subscriptions over a WebSocket to /graphql (graphql-transport-ws, graphql-ws's client).
 *
 * The Authorization header from the Headers editor is sent with HTTP requests and, as
 * `connectionParams.authorization`, in the WebSocket's connection_init: changing it opens
 * a new socket.
 *
 * The editors can be filled from the URL fragment (never sent to the server):
 *   /graphql#query=…&variables=…&headers=…&operationName=…
 */
(function () {
  "use strict";

  var HOME = [
    "query Home($first: Int!, $game: ID!) {",
    "  viewer { id handle displayName avatarUrl }",
    "  feed(first: $first) {",
    "    edges {",
    "      cursor",
    "      node {",
    "        id body createdAt likeCount viewerHasLiked",
    "        author { id handle avatarUrl }",
    "      }",
    "    }",
    "    pageInfo { endCursor hasNextPage }",
    "  }",
    "  leaderboard(gameId: $game, first: 10) { rank points user { id handle avatarUrl } }",
    "}",
    "",
  ].join("\n");

  var DEFAULT_QUERY =
    "# bff playground: queries and mutations run over HTTP,\n" +
    "# subscriptions over WebSocket (graphql-transport-ws).\n" +
    "# Sign in: in Headers below, put\n" +
    '#   {"Authorization": "Bearer <token>"}\n' +
    "# with a token from `bff token --user 7`.\n" +
    "\n" +
    HOME;
  var DEFAULT_VARIABLES = JSON.stringify({ first: 20, game: "1" }, null, 2);
  var DEFAULT_HEADERS = "{}";

  var httpUrl = location.origin + "/graphql";
  var wsUrl = (location.protocol === "https:" ? "wss:" : "ws:") + "//" + location.host + "/graphql";

  function authorizationOf(headers) {
    if (!headers || typeof headers !== "object") return undefined;
    for (var key in headers) {
      if (
        Object.prototype.hasOwnProperty.call(headers, key) &&
        key.toLowerCase() === "authorization" &&
        typeof headers[key] === "string" &&
        headers[key]
      ) {
        return headers[key];
      }
    }
    return undefined;
  }

  // One WebSocket client (and GraphiQL fetcher) per Authorization value.
  var current = null;

  function fetcherFor(authorization) {
    if (current && current.authorization === authorization) return current.fetcher;
    if (current) current.client.dispose();
    var client = graphqlWs.createClient({
      url: wsUrl,
      lazy: true,
      retryAttempts: 3,
      connectionParams: function () {
        return authorization ? { authorization: authorization } : {};
      },
    });
    current = {
      authorization: authorization,
      client: client,
      fetcher: GraphiQL.createFetcher({ url: httpUrl, wsClient: client }),
    };
    return current.fetcher;
  }

  function fetcher(graphQLParams, opts) {
    return fetcherFor(authorizationOf(opts && opts.headers))(graphQLParams, opts);
  }

  function fromFragment() {
    var params = new URLSearchParams(location.hash.replace(/^#/, ""));
    var out = {};
    ["query", "variables", "headers", "operationName"].forEach(function (name) {
      var value = params.get(name);
      if (value !== null) out[name] = value;
    });
    return out;
  }

  var root = null;
  var firstVisit = (function () {
    try {
      return window.localStorage.getItem("graphiql:tabState") === null;
    } catch (e) {
      return true;
    }
  })();

  function render() {
    var given = fromFragment();
    var props = {
      fetcher: fetcher,
      defaultQuery: DEFAULT_QUERY,
      defaultHeaders: DEFAULT_HEADERS,
      defaultEditorToolsVisibility: given.headers !== undefined ? "headers" : "variables",
      shouldPersistHeaders: false,
    };
    if (Object.keys(given).length === 0 && firstVisit) {
      // A first visit opens the Home query with its variables (GraphiQL 3 takes the
      // initial variables from this prop, not from a default tab).
      given = { query: DEFAULT_QUERY, variables: DEFAULT_VARIABLES };
    }
    ["query", "variables", "headers", "operationName"].forEach(function (name) {
      if (given[name] !== undefined) props[name] = given[name];
    });
    root.render(React.createElement(GraphiQL, props));
  }

  var container = document.getElementById("graphiql");
  if (typeof GraphiQL === "undefined" || typeof graphqlWs === "undefined" || !window.ReactDOM) {
    container.textContent = "The playground's scripts did not load (see the browser console).";
    return;
  }
  root = ReactDOM.createRoot(container);
  render();
  window.addEventListener("hashchange", render);
})();
