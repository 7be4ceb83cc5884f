"""The agents runtime every workflow shares: config, registry, run context, durable runs, records."""
