"""hilnas: devices."""
