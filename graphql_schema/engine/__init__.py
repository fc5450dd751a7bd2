"""The execution machinery, apart from the schema it runs.

Operation policy (``operations``), the document cache (``documents``), document limits
(``limits``), trusted documents and persisted queries, the executor and query plans
(``execution``, ``plans``) with their fence (``fences``), the JSON lane (``json_posts``),
GraphQL over HTTP (``over_http``), the websocket handler, error masking, rate limiting and
per-operation observability. The schema (types, inputs, results, resolvers, loaders,
subscriptions) lives one level up and knows nothing of this package.
"""
