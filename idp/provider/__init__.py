"""The OpenID Connect provider: authlib server, grants, keys/JWKS, endpoints."""
