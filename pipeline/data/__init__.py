"""hilnas: pipeline/data."""
