"""Reading a shop's feeds: formats (readers), the item schema and its checks (schema), what known
exports look like (presets), and interaction events (events). The registry (retrieval/registry.py)
drives an import; nothing here writes anything."""
