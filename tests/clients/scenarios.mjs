// Real GraphQL clients against a running `creditgate serve`, one scenario per run:
//   node scenarios.mjs <scenario>
// with CREDITGATE_CLIENT_CONFIG = {"url", "wsUrl", "secret", "accountId", "manifest"?, "origin"?}.
// Prints one JSON report on stdout; tests/clients/test_clients.py asserts on it, so every
// rule is stated (and can fail) in the Python test that names it.
import { createHmac, createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import {
  ApolloClient,
  ApolloLink,
  CombinedGraphQLErrors,
  HttpLink,
  InMemoryCache,
  gql,
} from "@apollo/client";
import { BatchHttpLink } from "@apollo/client/link/batch-http";
import { SetContextLink } from "@apollo/client/link/context";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { OperationTypeNode } from "graphql";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { generatePersistedQueryIdsFromManifest } from "@apollo/persisted-query-lists";
import { Client as UrqlClient, cacheExchange, fetchExchange, subscriptionExchange } from "@urql/core";
import { persistedExchange } from "@urql/exchange-persisted";
import { serverAudits } from "graphql-http";
import { createClient as createWsClient } from "graphql-ws";
import WebSocket from "ws";

const here = dirname(fileURLToPath(import.meta.url));
const config = JSON.parse(process.env.CREDITGATE_CLIENT_CONFIG ?? "{}");
const operation = (name) => gql(readFileSync(join(here, "operations", `${name}.graphql`), "utf8"));
/** The operation under a name of its own (`nonce`): a text no other test registered. */
const renamed = (name, nonce) =>
  gql(
    readFileSync(join(here, "operations", `${name}.graphql`), "utf8").replace(
      /^(query|mutation) (\w+)/,
      `$1 $2${nonce}`,
    ),
  );
const EDITOR = operation("editor");
const DASHBOARD = operation("dashboard");
const CATALOG = operation("catalog");
const RUN = operation("run-generator");
const BUY = operation("buy-pack");
const possibleTypes = JSON.parse(
  readFileSync(join(here, "..", "..", "graphql_schema", "possible-types.json"), "utf8"),
);

// --- helpers ---

/** An HS256 JWT as `creditgate token` signs it, valid for `seconds` from now. */
function token(seconds = 3600) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const claims = { role: "user", sub: config.accountId, iat: now, exp: now + seconds };
  const unsigned = `${encode({ alg: "HS256", typ: "JWT" })}.${encode(claims)}`;
  const signature = createHmac("sha256", config.secret).update(unsigned).digest("base64url");
  return `${unsigned}.${signature}`;
}

/** fetch, recording each request the client really sent and what came back. */
function recordingFetch() {
  const sent = [];
  const fetchFn = async (input, init = {}) => {
    const url = new URL(typeof input === "string" ? input : input.url);
    const headers = new Headers(init.headers);
    const entry = {
      method: init.method ?? "GET",
      accept: headers.get("accept"),
      hashOnly: false,
      batch: false,
      headers: [...headers.keys()].sort(),
    };
    if (entry.method === "GET") {
      entry.hashOnly = url.searchParams.has("extensions") && !url.searchParams.has("query");
    } else if (typeof init.body === "string") {
      const body = JSON.parse(init.body);
      entry.batch = Array.isArray(body);
      entry.size = entry.batch ? body.length : 1;
      entry.hashOnly = !entry.batch && body.query === undefined && !!body.extensions;
    }
    const response = await fetch(input, init);
    entry.status = response.status;
    entry.contentType = response.headers.get("content-type");
    sent.push(entry);
    return response;
  };
  return { sent, fetchFn };
}

const authorization = () => ({ authorization: `Bearer ${token()}` });

function apollo(link, options = {}) {
  return new ApolloClient({ link, cache: new InMemoryCache({ possibleTypes }), ...options });
}

/** What a client reports for a failed operation: a GraphQL error (with its code) or not. */
function failure(error) {
  if (CombinedGraphQLErrors.is(error)) {
    return { kind: "graphql", codes: error.errors.map((e) => e.extensions?.code) };
  }
  return { kind: error?.constructor?.name ?? String(error), message: String(error) };
}

async function since(sent, call) {
  const before = sent.length;
  const result = await call();
  return { result, requests: sent.slice(before) };
}

// --- scenarios ---

const scenarios = {
  /** The editor, dashboard and mobile operations through Apollo Client's HttpLink. */
  async apollo() {
    const { sent, fetchFn } = recordingFetch();
    const client = apollo(new HttpLink({ uri: config.url, fetch: fetchFn, headers: authorization() }));
    const editor = await client.query({ query: EDITOR });
    const dashboard = await client.query({ query: DASHBOARD });
    const catalog = await client.query({ query: CATALOG });
    const run = await client.mutate({ mutation: RUN, variables: { tool: "TURBO", key: "apollo-1" } });
    const buy = await client.mutate({ mutation: BUY, variables: { packId: "pack-500", key: "apollo-1" } });
    const after = await client.query({ query: EDITOR, fetchPolicy: "network-only" });
    // A request error (a variable that does not coerce): a GraphQL error, not a network one.
    let refused;
    try {
      await client.query({ query: RUN_AS_QUERY_WITH_BAD_VARIABLE, variables: { ids: [{ no: 1 }] } });
    } catch (error) {
      refused = failure(error);
    }
    return {
      editor: editor.data.me,
      dashboard: dashboard.data.me,
      packs: catalog.data.creditPacks.length,
      run: run.data.runGenerator,
      buy: buy.data.purchasePack.__typename,
      after: after.data.me,
      refused,
      requests: sent,
    };
  },

  /** The same operations through urql, which sends queries as GET by default. */
  async urql() {
    const { sent, fetchFn } = recordingFetch();
    const client = new UrqlClient({
      url: config.url,
      exchanges: [cacheExchange, fetchExchange],
      fetch: fetchFn,
      fetchOptions: () => ({ headers: authorization() }),
      requestPolicy: "network-only",
    });
    const editor = await client.query(EDITOR, {}).toPromise();
    const dashboard = await client.query(DASHBOARD, {}).toPromise();
    const run = await client.mutation(RUN, { tool: "TURBO", key: "urql-1" }).toPromise();
    const after = await client.query(EDITOR, {}).toPromise();
    const refused = await client
      .query(RUN_AS_QUERY_WITH_BAD_VARIABLE, { ids: [{ no: 1 }] })
      .toPromise();
    const errors = [editor, dashboard, run, after].map((r) => r.error?.message ?? null);
    return {
      editor: editor.data?.me,
      dashboard: dashboard.data?.me,
      run: run.data?.runGenerator,
      after: after.data?.me,
      errors,
      refused: {
        network: refused.error?.networkError ? String(refused.error.networkError) : null,
        codes: (refused.error?.graphQLErrors ?? []).map((e) => e.extensions?.code),
      },
      requests: sent,
    };
  },

  /** Apollo's automatic persisted queries, hashed queries over GET: count the requests. */
  async "apollo-apq"() {
    const { sent, fetchFn } = recordingFetch();
    // `otherUrl`: another process; with Redis it knows what the first one registered.
    const link = (uri = config.url) =>
      new PersistedQueryLink({ sha256, useGETForHashedQueries: true }).concat(
        new HttpLink({ uri, fetch: fetchFn, headers: authorization() }),
      );
    const first = apollo(link());
    const opts = { query: renamed("dashboard", config.nonce), fetchPolicy: "network-only" };
    const run = renamed("run-generator", config.nonce);
    const registering = await since(sent, () => first.query(opts));
    const repeat = await since(sent, () => first.query(opts));
    const anotherClient = await since(sent, () => apollo(link(config.otherUrl)).query(opts));
    const mutation = (key) => () =>
      first.mutate({ mutation: run, variables: { tool: "TURBO", key } });
    const runFirst = await since(sent, mutation("apq-1"));
    const runAgain = await since(sent, mutation("apq-2"));
    return {
      dashboard: repeat.result.data.me,
      requests: {
        registering: registering.requests,
        repeat: repeat.requests,
        anotherClient: anotherClient.requests,
        mutationFirst: runFirst.requests,
        mutationAgain: runAgain.requests,
      },
      run: runAgain.result.data.runGenerator,
    };
  },

  /** urql's persisted exchange (GET within the URL limit): count the requests. */
  async "urql-apq"() {
    const { sent, fetchFn } = recordingFetch();
    const client = () =>
      new UrqlClient({
        url: config.url,
        exchanges: [cacheExchange, persistedExchange(), fetchExchange],
        fetch: fetchFn,
        fetchOptions: () => ({ headers: authorization() }),
        requestPolicy: "network-only",
      });
    const first = client();
    const editor = renamed("editor", config.nonce);
    const registering = await since(sent, () => first.query(editor, {}).toPromise());
    const repeat = await since(sent, () => first.query(editor, {}).toPromise());
    const anotherClient = await since(sent, () => client().query(editor, {}).toPromise());
    return {
      editor: repeat.result.data?.me,
      error: repeat.result.error?.message ?? null,
      requests: {
        registering: registering.requests,
        repeat: repeat.requests,
        anotherClient: anotherClient.requests,
      },
    };
  },

  /** Trusted-only: ids from the manifest Apollo's own generator wrote; one request each. */
  async trusted() {
    const manifest = JSON.parse(readFileSync(config.manifest, "utf8"));
    const { sent, fetchFn } = recordingFetch();
    const http = new HttpLink({ uri: config.url, fetch: fetchFn, headers: authorization() });
    const listed = apollo(
      new PersistedQueryLink(generatePersistedQueryIdsFromManifest({ loadManifest: () => manifest })).concat(http),
    );
    const editor = await since(sent, () => listed.query({ query: EDITOR }));
    const dashboard = await since(sent, () => listed.query({ query: DASHBOARD }));
    const run = await since(sent, () =>
      listed.mutate({ mutation: RUN, variables: { tool: "TURBO", key: "trusted-1" } }),
    );
    let free;
    try {
      await apollo(http).query({ query: gql`query Free { tariffs { tool } }` });
    } catch (error) {
      free = failure(error);
    }
    return {
      editor: editor.result.data.me,
      dashboard: dashboard.result.data.me,
      run: run.result.data.runGenerator,
      requests: [...editor.requests, ...dashboard.requests, ...run.requests],
      free,
    };
  },

  /** Apollo's BatchHttpLink: operations issued together travel as one JSON array. */
  async batch() {
    const { sent, fetchFn } = recordingFetch();
    const client = apollo(
      new BatchHttpLink({ uri: config.url, fetch: fetchFn, headers: authorization(), batchMax: 10, batchInterval: 20 }),
    );
    const three = await since(sent, () =>
      Promise.all([
        client.query({ query: EDITOR }),
        client.query({ query: DASHBOARD }),
        client.query({ query: CATALOG }),
      ]),
    );
    const ten = await since(sent, () =>
      Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          client.mutate({ mutation: RUN, variables: { tool: "TURBO", key: `batch-${i}` } }),
        ),
      ),
    );
    const eleven = await fetch(config.url, {
      method: "POST",
      headers: { "content-type": "application/json", ...authorization() },
      body: JSON.stringify(Array.from({ length: 11 }, () => ({ query: "{ plans { plan } }" }))),
    });
    return {
      editor: three.result[0].data.me,
      packs: three.result[2].data.creditPacks.length,
      threeRequests: three.requests,
      tenRequests: ten.requests,
      runs: ten.result.map((r) => r.data.runGenerator.__typename),
      eleven: { status: eleven.status, body: await eleven.json() },
    };
  },

  /** graphql-ws: a live total that outlives its token is closed with 4403 and resubscribed. */
  async subscription() {
    // Long enough to connect on a busy machine, short enough to expire during the test.
    const seconds = config.firstTokenSeconds ?? 4;
    const closes = [];
    const values = [];
    let connections = 0;
    let issued = 0;
    const client = createWsClient({
      url: config.wsUrl,
      webSocketImpl: WebSocket,
      // A function: each (re)connection asks for a fresh token; only the first is short.
      connectionParams: async () => ({
        Authorization: `Bearer ${token(issued++ === 0 ? seconds : 3600)}`,
      }),
      on: {
        connected: () => connections++,
        closed: (event) => closes.push(event?.code),
      },
    });
    const reconnected = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no value after a reconnection")), 30000);
      client.subscribe(
        { query: "subscription { creditsChanged { creditsTotal } }" },
        {
          next: (value) => {
            values.push({ connection: connections, total: value.data?.creditsChanged?.creditsTotal, errors: value.errors ?? null });
            if (connections >= 2) {
              clearTimeout(timer);
              resolve();
            }
          },
          error: (error) => {
            clearTimeout(timer);
            reject(new Error(`subscription failed: ${JSON.stringify(error?.code ?? error)}`));
          },
          complete: () => values.push({ connection: connections, completed: true }),
        },
      );
    });
    try {
      await reconnected;
    } finally {
      await client.dispose();
    }
    return { closes, connections, tokensIssued: issued, values };
  },

  /** CORS preflights as a browser sends them with tracing and client awareness turned on. */
  async cors() {
    const asked = [
      "authorization",
      "content-type",
      "traceparent",
      "tracestate",
      "baggage",
      "sentry-trace",
      "apollographql-client-name",
      "apollographql-client-version",
    ];
    const preflight = await fetch(config.url, {
      method: "OPTIONS",
      headers: {
        origin: config.origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": asked.join(","),
      },
    });
    // Then the request itself, with those headers, through Apollo Client.
    const { sent, fetchFn } = recordingFetch();
    const traced = apollo(
      new HttpLink({
        uri: config.url,
        fetch: fetchFn,
        headers: {
          ...authorization(),
          origin: config.origin,
          traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
          tracestate: "vendor=1",
          baggage: "team=editor",
          "sentry-trace": "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
        },
      }),
      // Apollo's client awareness: apollographql-client-name and -version headers
      { clientAwareness: { name: "editor-web", version: "1.2.3" } },
    );
    const editor = await traced.query({ query: EDITOR });
    return {
      preflight: {
        status: preflight.status,
        allowOrigin: preflight.headers.get("access-control-allow-origin"),
        allowHeaders: preflight.headers.get("access-control-allow-headers"),
      },
      asked,
      editor: editor.data.me,
      requests: sent,
    };
  },

  /** The Apollo Client set-up of docs/clients.md, as written there: one query, one mutation, a
   * live total over the websocket, with a token read per request. */
  async "readme-apollo"() {
    const { sent, fetchFn } = recordingFetch();
    const getToken = () => token();
    const url = config.url;
    const wsUrl = config.wsUrl;
    // --- as in docs/clients.md, "Set-up in code" ---
    const http = new HttpLink({ uri: url, fetch: fetchFn });
    const auth = new SetContextLink(({ headers }) => ({
      headers: { ...headers, authorization: `Bearer ${getToken()}` },
    }));
    const ws = new GraphQLWsLink(
      createWsClient({
        url: wsUrl,
        webSocketImpl: WebSocket,
        connectionParams: async () => ({ Authorization: `Bearer ${getToken()}` }),
      }),
    );
    const client = new ApolloClient({
      cache: new InMemoryCache({ possibleTypes }),
      link: ApolloLink.split(
        ({ operationType }) => operationType === OperationTypeNode.SUBSCRIPTION,
        ws,
        ApolloLink.from([auth, new PersistedQueryLink({ sha256, useGETForHashedQueries: true }), http]),
      ),
    });
    // ---
    const editor = await client.query({ query: EDITOR });
    const run = await client.mutate({ mutation: RUN, variables: { tool: "TURBO", key: "readme-apollo" } });
    const live = await new Promise((resolve, reject) => {
      const subscription = client
        .subscribe({ query: gql`subscription Live { creditsChanged { id creditsTotal } }` })
        .subscribe({
          next: (value) => {
            subscription.unsubscribe();
            resolve(value.data.creditsChanged);
          },
          error: reject,
        });
    });
    await client.stop();
    return { editor: editor.data.me, run: run.data.runGenerator, live, requests: sent };
  },

  /** The urql set-up of docs/clients.md, as written there. */
  async "readme-urql"() {
    const { sent, fetchFn } = recordingFetch();
    const getToken = () => token();
    const url = config.url;
    const wsUrl = config.wsUrl;
    // --- as in docs/clients.md, "Set-up in code" ---
    const ws = createWsClient({
      url: wsUrl,
      webSocketImpl: WebSocket,
      connectionParams: async () => ({ Authorization: `Bearer ${getToken()}` }),
    });
    const client = new UrqlClient({
      url,
      fetch: fetchFn,
      exchanges: [
        cacheExchange,
        persistedExchange(),
        fetchExchange,
        subscriptionExchange({
          forwardSubscription: (request) => ({
            subscribe: (sink) => ({ unsubscribe: ws.subscribe(request, sink) }),
          }),
        }),
      ],
      fetchOptions: () => ({ headers: { authorization: `Bearer ${getToken()}` } }),
    });
    // ---
    const editor = await client.query(EDITOR, {}).toPromise();
    const run = await client.mutation(RUN, { tool: "TURBO", key: "readme-urql" }).toPromise();
    const live = await new Promise((resolve) => {
      const { unsubscribe } = client
        .subscription(gql`subscription Live { creditsChanged { id creditsTotal } }`, {})
        .subscribe((result) => {
          unsubscribe();
          resolve(result.data?.creditsChanged ?? result.error?.message);
        });
    });
    await ws.dispose();
    return { editor: editor.data?.me, run: run.data?.runGenerator, live, requests: sent };
  },

  /** graphql-http's GraphQL-over-HTTP audits. */
  async audit() {
    const results = [];
    for (const audit of serverAudits({ url: config.url })) {
      const result = await audit.fn();
      results.push({ id: result.id, name: result.name, status: result.status, reason: result.reason ?? null });
    }
    return { results };
  },
};

// A query whose variable cannot be coerced (an object for an ID): a request error.
const RUN_AS_QUERY_WITH_BAD_VARIABLE = gql`
  query Accounts($ids: [ID!]!) {
    accounts(ids: $ids) {
      id
    }
  }
`;

function sha256(text) {
  return createHash("sha256").update(text).digest("hex");
}

const name = process.argv[2];
if (!scenarios[name]) {
  console.error(`unknown scenario ${name}; one of ${Object.keys(scenarios).join(", ")}`);
  process.exit(2);
}
const report = await scenarios[name]();
process.stdout.write(`${JSON.stringify(report)}\n`);
process.exit(0);
