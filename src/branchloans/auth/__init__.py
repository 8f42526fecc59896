"""API keys, their scopes, and the dependencies that demand them."""
