"""HTTP routers: one module per API dialect, each translating to and from the native engine."""
