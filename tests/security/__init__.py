"""The security suites (smuggling, spoofed headers, requests straight to a child), quick."""
