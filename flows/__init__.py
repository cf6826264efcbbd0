"""hilnas: flows."""
