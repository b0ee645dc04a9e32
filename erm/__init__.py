"""The ERM layer: GraphQL client, typed models, encrypted credentials and the sandbox stand-in.

Nothing here imports ``bot``, ``adapters`` or a chat library.
"""
