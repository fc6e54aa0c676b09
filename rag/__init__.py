"""Reads the knowledge base and talks to models: retrieval, context packing, Ollama answers."""
