"""What the HTTP API functions share: settings, the resolver with its guards, responses, idempotency."""
