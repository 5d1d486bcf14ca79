"""usage-gateway: one GraphQL graph over vendor usage and quota APIs."""

__version__ = "0.1.0"
