"""ReputeAPI: ``GET /v1/usage`` (monthly quota, per-minute rate limit, usage by hour to month)."""
