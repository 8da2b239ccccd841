"""The WebUI side of noise rectification (imports the WebUI's ``modules``; the core does not).

``args`` (the WebUI's forms of the settings) imports neither the WebUI nor gradio.
"""
