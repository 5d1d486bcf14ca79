"""ZKScore developer API: per-API-key usage statistics, errors, latency and rate limits."""
