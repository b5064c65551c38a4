"""The pipeline spec: the strict pydantic models of one pipeline's YAML file, and loading them."""
