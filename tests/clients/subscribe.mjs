// Subscribes to `messageAdded(roomId)` with a real GraphQL-over-WebSocket client library.
//
//   node subscribe.mjs --url ws://127.0.0.1:8000/graphql --protocol graphql-transport-ws \
//     --token <jwt or -> --room 1 --count 5 [--after <message id>] [--timeout 20000]
//
// --protocol graphql-transport-ws: `createClient` of graphql-ws (WebSocket from `ws`);
// --protocol graphql-ws: `SubscriptionClient` of subscriptions-transport-ws (the legacy protocol).
// The token goes in connection_init's payload as {"authorization": "Bearer <token>"} ("-": none).
//
// Prints one JSON line per event on stdout:
//   {"event":"connected"}                  the server acknowledged connection_init
//   {"event":"next","data":{...}}          one result (`data` of messageAdded's payload)
//   {"event":"error","error":...}          the subscription failed (errors or a close event)
//   {"event":"closed","code":4403,"reason":"Forbidden"}   the socket closed
//   {"event":"connection_error","payload":...}            legacy: connection_init refused
// Exits 0 after --count results, 1 when the subscription ends or fails first, 3 at --timeout,
// 2 on bad arguments.
import { parseArgs } from 'node:util';
import { createClient } from 'graphql-ws';
import { SubscriptionClient } from 'subscriptions-transport-ws';
import WebSocket from 'ws';

const QUERY = `subscription ($room: ID!, $after: String) {
  messageAdded(roomId: $room, after: $after) { id body author { handle } }
}`;

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      url: { type: 'string' },
      protocol: { type: 'string' },
      token: { type: 'string', default: '-' },
      room: { type: 'string' },
      count: { type: 'string', default: '1' },
      after: { type: 'string' },
      timeout: { type: 'string', default: '20000' },
    },
  }));
} catch (error) {
  console.error(String(error));
  process.exit(2);
}
if (!args.url || !args.room || !['graphql-transport-ws', 'graphql-ws'].includes(args.protocol)) {
  console.error(
    'usage: node subscribe.mjs --url <ws url> --protocol graphql-transport-ws|graphql-ws ' +
      '--token <jwt|-> --room <id> --count <n> [--after <id>] [--timeout <ms>]',
  );
  process.exit(2);
}

const count = Number(args.count);
const connectionParams = args.token === '-' ? {} : { authorization: `Bearer ${args.token}` };
const variables = { room: args.room, after: args.after ?? null };
let received = 0;
let finish = () => {};

function print(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

function exit(code) {
  finish();
  // Let stdout drain before leaving.
  process.stdout.write('', () => process.exit(code));
}

const sink = {
  next(result) {
    if (result.errors) {
      print({ event: 'error', error: result.errors });
      exit(1);
      return;
    }
    print({ event: 'next', data: result.data });
    received += 1;
    if (received >= count) exit(0);
  },
  error(error) {
    print({ event: 'error', error: describe(error) });
    exit(1);
  },
  complete() {
    print({ event: 'complete' });
    if (received < count) exit(1);
  },
};

function describe(error) {
  if (Array.isArray(error)) return error.map(describe);
  if (error && typeof error === 'object' && 'code' in error && 'reason' in error) {
    return { code: error.code, reason: String(error.reason) }; // a CloseEvent
  }
  if (error instanceof Error) return { message: error.message };
  return error;
}

if (args.protocol === 'graphql-transport-ws') {
  const client = createClient({
    url: args.url,
    webSocketImpl: WebSocket,
    connectionParams,
    lazy: true,
    retryAttempts: 0,
    on: {
      connected: () => print({ event: 'connected' }),
      closed: (event) => print({ event: 'closed', code: event.code, reason: String(event.reason) }),
    },
  });
  const unsubscribe = client.subscribe({ query: QUERY, variables }, sink);
  finish = () => {
    unsubscribe();
    client.dispose();
  };
} else {
  const client = new SubscriptionClient(
    args.url,
    {
      reconnect: false,
      connectionParams,
      connectionCallback: (error) => {
        if (error) {
          print({ event: 'connection_error', payload: error });
          exit(1);
        }
      },
    },
    WebSocket,
  );
  client.onConnected(() => print({ event: 'connected' }));
  // The socket's close code is not surfaced by SubscriptionClient: read it on the `ws` socket.
  client.client.on('close', (code, reason) => print({ event: 'closed', code, reason: reason.toString() }));
  const subscription = client.request({ query: QUERY, variables }).subscribe(sink);
  finish = () => {
    subscription.unsubscribe();
    client.close();
  };
}

setTimeout(() => {
  print({ event: 'timeout', received });
  exit(3);
}, Number(args.timeout));
