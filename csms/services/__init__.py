"""Business rules as plain functions over the database: no Flask request, no WebSocket, no Dramatiq."""
