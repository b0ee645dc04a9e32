"""Everything that touches a chat platform or a terminal, and the composition root (``cli``)."""
