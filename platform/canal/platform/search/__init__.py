"""Search: Meilisearch indexes, the tenant visibility rule, tenant tokens, indexing jobs."""
