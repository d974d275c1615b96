"""marshmallow schemas: every request is loaded and every response dumped through one of these."""
