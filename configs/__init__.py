"""One ml_collections config file per method, each with get_config(arg=None)."""
