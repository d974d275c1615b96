"""REST blueprints."""
