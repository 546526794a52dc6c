"""The VOX-1 engine runtime: attention selection with proof, measured batch sizing, no lost chunks.

Importing `engine` (or `engine.settings`) never imports torch: the CLI reads settings through it.
"""

__version__ = "0.1.0"
