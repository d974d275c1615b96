"""Getting events from the web process to the actors: durably, in bounded resources."""
