"""hilnas: profilers."""
