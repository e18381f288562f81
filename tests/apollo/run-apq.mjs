// Apollo Client's persisted-queries link against a running bff (tests/test_persisted.py).
//
// usage: node run-apq.mjs <url> <post|get>
// Runs the same query twice with fetchPolicy "network-only" and prints, as JSON, every HTTP
// request the link chain sent (method, whether it carried the query text and the hash) and
// both results. `get` sets useGETForHashedQueries, as mobile clients behind a CDN do.
import { createHash } from "node:crypto";
import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";

const [url, mode] = process.argv.slice(2);
const requests = [];

async function recordingFetch(input, init = {}) {
  const target = new URL(typeof input === "string" ? input : input.url);
  const method = (init.method || "GET").toUpperCase();
  let payload;
  if (method === "GET") {
    payload = Object.fromEntries(target.searchParams.entries());
    for (const key of ["variables", "extensions"]) {
      if (payload[key]) payload[key] = JSON.parse(payload[key]);
    }
  } else {
    payload = JSON.parse(init.body);
  }
  const response = await fetch(input, init);
  requests.push({
    method,
    hasQuery: typeof payload.query === "string" && payload.query.length > 0,
    hash: payload.extensions?.persistedQuery?.sha256Hash ?? null,
    status: response.status,
  });
  return response;
}

const link = new PersistedQueryLink({
  sha256: (text) => createHash("sha256").update(text).digest("hex"),
  useGETForHashedQueries: mode === "get",
}).concat(new HttpLink({ uri: url, fetch: recordingFetch }));

const client = new ApolloClient({ link, cache: new InMemoryCache() });
// One operation name per mode: each run starts with a hash the server has not seen.
const query = gql(`
  query Games_${mode}($first: Int!) {
    games {
      id
      name
      leaderboard(first: $first) {
        rank
        points
      }
    }
  }
`);

const results = [];
for (let i = 0; i < 2; i++) {
  const result = await client.query({ query, variables: { first: 2 }, fetchPolicy: "network-only" });
  results.push({ data: result.data, error: result.error ? String(result.error) : null });
}
process.stdout.write(JSON.stringify({ requests, results }));
