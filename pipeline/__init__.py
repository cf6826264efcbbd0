"""hilnas: pipeline."""
