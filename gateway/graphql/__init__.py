"""The GraphQL layer: described types (``types``) and thin resolvers (``schema``)."""
