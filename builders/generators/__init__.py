"""LLM-backed generators that turn raw material into instructions."""
