"""The smallest real workflow: a model calls an MCP tool, then answers from its result."""
