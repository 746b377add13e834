"""Shopify Admin GraphQL: the client (``client``) and a local sandbox speaking the same API (``sandbox``)."""
