"""The WebUI side of noise rectification (imports the WebUI's ``modules``; the core does not)."""
