// Runs graphql-http's server audits (GraphQL over HTTP conformance) against a running server.
//
//   node run-audits.mjs http://127.0.0.1:8000/graphql
//
// Prints a JSON array of {id, name, status, reason} to stdout, one entry per audit, and exits 0
// (the caller judges the results); exits 2 on a fatal error (bad arguments, unreachable server).
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node run-audits.mjs <graphql endpoint url>');
  process.exit(2);
}

const results = [];
for (const audit of serverAudits({ url, fetchFn: fetch })) {
  // One at a time: the results are easier to match with the server's log.
  const result = await audit.fn();
  results.push({
    id: result.id,
    name: result.name,
    status: result.status,
    reason: result.status === 'ok' ? null : String(result.reason),
  });
}
process.stdout.write(JSON.stringify(results, null, 2) + '\n');
