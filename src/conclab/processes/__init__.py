"""The processes layer: start servers (and the web server in front) and never leave one behind."""
