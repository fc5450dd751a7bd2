"""Hardening in front of GraphQL: request ids, body and content-type guards, rate limits."""
