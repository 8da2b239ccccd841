"""Benchmarks and the measuring instrument (small trained video model); not shipped to the WebUI path."""
