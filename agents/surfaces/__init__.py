"""The surfaces that run Braid workflows for someone outside Python: MCP clients (`mcp_server`)."""
