"""Writes the knowledge base: reads documents, chunks and embeds them into Qdrant."""
