"""The GraphQL transport: types, thin resolvers, per-request loaders."""
